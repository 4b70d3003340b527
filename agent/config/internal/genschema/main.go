// Command genschema writes config.schema.json and README.md of package
// agent/config from the Config structs. It runs from `go generate
// ./agent/config`, in that package's directory; it knows nothing else.
package main

import (
	"fmt"
	"os"

	"github.com/iot-producer/iot-producer/agent/config"
	// The reference and schema cover every plug-in of the build.
	_ "github.com/iot-producer/iot-producer/plugins/all"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "genschema:", err)
		os.Exit(1)
	}
}

func run() error {
	for _, out := range []struct {
		file string
		gen  func() ([]byte, error)
	}{
		{"config.schema.json", config.JSONSchema},
		{"README.md", config.ReferenceMarkdown},
	} {
		b, err := out.gen()
		if err != nil {
			return err
		}
		if err := os.WriteFile(out.file, b, 0o644); err != nil {
			return fmt.Errorf("write %s: %w", out.file, err)
		}
	}
	return nil
}
