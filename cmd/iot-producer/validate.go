package main

import (
	"errors"
	"flag"
	"fmt"
	"io"

	"github.com/iot-producer/iot-producer/agent"
	"github.com/iot-producer/iot-producer/agent/config"
)

const validateUsage = `Usage: iot-producer validate [-c FILE] [FILE ...]

Checks configuration files the way run does: each is parsed and every
driver, sink, certificate and password file it names is built, as run
would, without connecting to anything. What only a running agent finds
out (a port in use, a buffer file locked by a running agent) is checked
by run and on reload.

Exit status: 0 when every file is good, 2 when one is not (each problem is
listed with its key and line), 1 when a file cannot be read.
`

func cmdValidate(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("validate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(fs.Output(), validateUsage) }
	path := fs.String("c", "", "configuration file (default "+config.DefaultPath()+" when no FILE is given)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fs.SetOutput(stdout)
			fs.Usage()
			return exitOK
		}
		return exitUsage
	}
	files := fs.Args()
	if *path != "" {
		files = append([]string{*path}, files...)
	}
	if len(files) == 0 {
		files = []string{config.DefaultPath()}
	}
	status := exitOK
	for _, f := range files {
		if s := validateFile(f, stdout, stderr); s > status {
			status = s
		}
	}
	return status
}

// validateFile checks one file and returns its exit status.
func validateFile(path string, stdout, stderr io.Writer) int {
	cfg, err := config.Load(path)
	if err == nil {
		err = agent.Check(cfg)
	}
	var verrs config.ValidationErrors
	switch {
	case err == nil:
		fmt.Fprintf(stdout, "%s: ok\n", path)
		return exitOK
	case errors.As(err, &verrs):
		fmt.Fprintf(stderr, "%s: %d problem(s):\n", path, len(verrs))
		for _, e := range verrs {
			fmt.Fprintf(stderr, "  %s\n", e)
		}
		return exitUsage
	}
	fmt.Fprintf(stderr, "%s: %v\n", path, err)
	return exitFailure
}
