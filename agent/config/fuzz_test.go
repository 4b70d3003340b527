package config_test

import (
	"errors"
	. "github.com/iot-producer/iot-producer/agent/config"
	_ "github.com/iot-producer/iot-producer/plugins/all"
	"os"
	"path/filepath"
	"testing"
)

// FuzzParse checks that no input makes Parse panic, and that a rejected
// input always comes with at least one problem.
func FuzzParse(f *testing.F) {
	files, _ := filepath.Glob("../../configs/*.yaml")
	for _, file := range files {
		f.Add(mustReadF(f, file))
	}
	f.Add([]byte(plcFile))
	f.Add([]byte(mergeFile))
	f.Add([]byte("producer:\n  flush_interval: ${X:-5}\n  brokers: a:1,b:2\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse(data, "fuzz.yaml")
		if err == nil {
			if c == nil {
				t.Fatal("nil config without an error")
			}
			return
		}
		var ve ValidationErrors
		if errors.As(err, &ve) && len(ve) == 0 {
			t.Fatal("empty ValidationErrors")
		}
	})
}

func mustReadF(f *testing.F, path string) []byte {
	f.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		f.Fatal(err)
	}
	return b
}
