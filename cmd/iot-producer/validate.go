package main

import (
	"errors"
	"flag"
	"fmt"
	"io"

	"github.com/iot-producer/iot-producer/agent/config"
)

func cmdValidate(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("validate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("c", config.DefaultPath(), "configuration file")
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	if _, err := config.Load(*path); err != nil {
		var verrs config.ValidationErrors
		if errors.As(err, &verrs) {
			fmt.Fprintf(stderr, "%s: %d problem(s):\n", *path, len(verrs))
			for _, e := range verrs {
				fmt.Fprintf(stderr, "  %s\n", e)
			}
			return exitUsage
		}
		fmt.Fprintf(stderr, "%s: %v\n", *path, err)
		return exitUsage
	}
	fmt.Fprintf(stdout, "%s: ok\n", *path)
	return exitOK
}
