package config_test

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	. "github.com/iot-producer/iot-producer/agent/config"
	_ "github.com/iot-producer/iot-producer/plugins/all"
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

// FuzzLoad loads arbitrary files from disk the way run and validate do:
// ${ENV} expansion from the environment, password_file read relative to the
// file. No input may panic; a refused file gives at least one problem, none
// of which shows a URL's credentials; an accepted file validates again as
// built and encodes for /config without URL credentials.
func FuzzLoad(f *testing.F) {
	files, _ := filepath.Glob("../../configs/*.yaml")
	for _, file := range files {
		f.Add(mustReadF(f, file), "x")
	}
	f.Add([]byte("producer:\n  brokers: ${FUZZ_ENV}\n  sasl:\n    mechanism: PLAIN\n    username: u\n    password_file: pw.txt\n    allow_plain_without_tls: true\n"), "a:9092,b:9092")
	f.Add([]byte("producer:\n  brokers: [\"${FUZZ_ENV:-tcp://u:p@h:1}\"]\n"), "")
	f.Add([]byte("gateway:\n  id: ${FUZZ_ENV}\n  state_dir: ./state\n"), "gw-1")
	f.Add([]byte("telemetry:\n  pprof_listen: ${FUZZ_ENV}\n  pprof_allow_remote: false\n"), "0.0.0.0:6060")
	dir := f.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "pw.txt"), []byte("file-secret\n"), 0o600); err != nil {
		f.Fatal(err)
	}
	path := filepath.Join(dir, "config.yaml")
	f.Fuzz(func(t *testing.T, data []byte, env string) {
		if strings.IndexByte(env, 0) >= 0 {
			return // not representable in the environment
		}
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		t.Setenv("FUZZ_ENV", env)
		c, err := Load(path)
		if err != nil {
			var ve ValidationErrors
			if !errors.As(err, &ve) || len(ve) == 0 {
				t.Fatalf("refused without problems: %v", err)
			}
			for _, line := range strings.Split(err.Error(), "\n") {
				if RedactURLs(line) != line {
					t.Fatalf("problem shows URL credentials: %s", line)
				}
			}
			return
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("accepted file fails Validate as built:\n%v", err)
		}
		b, err := json.Marshal(c.Redacted())
		if err != nil {
			t.Fatalf("encoding for /config: %v", err)
		}
		var doc any
		if err := json.Unmarshal(b, &doc); err != nil {
			t.Fatalf("/config is not JSON: %v", err)
		}
		if s, ok := unredactedString(doc); ok {
			t.Fatalf("/config shows URL credentials: %q", s)
		}
		_ = c.Warnings()
	})
}

// unredactedString returns a string in the decoded JSON v that still holds
// a URL's credentials.
func unredactedString(v any) (string, bool) {
	switch v := v.(type) {
	case string:
		return v, RedactURLs(v) != v
	case []any:
		for _, e := range v {
			if s, ok := unredactedString(e); ok {
				return s, true
			}
		}
	case map[string]any:
		for _, e := range v {
			if s, ok := unredactedString(e); ok {
				return s, true
			}
		}
	}
	return "", false
}
