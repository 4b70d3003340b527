package main

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

func writeFile(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestValidate(t *testing.T) {
	cases := []struct {
		name     string
		body     string
		code     int
		stdout   []string
		stderr   []string
		noStderr bool
	}{
		{
			name: "good file", code: exitOK,
			body:   "device: {count: 2}\nproducer: {brokers: [\"k:9092\"]}\n",
			stdout: []string{": ok"}, noStderr: true,
		},
		{
			name: "every problem listed with path and line", code: exitUsage,
			body: "producer:\n  batch_size: 0\n  flush_intervall: 5\nplcs:\n  - name: p1\n    driver: modbus\n    endpoint: 10.0.0.1:502\n    tags:\n      - {name: t, address: \"40001\", type: flaot32}\n",
			stderr: []string{
				"3 problem(s)",
				"producer.batch_size: ",
				"(line 2)",
				"producer.flush_intervall",
				"(line 3)",
				`plcs[0].tags[0].type: unknown type "flaot32"`,
				"(line 9)",
			},
		},
		{
			name: "missing file", code: exitFailure,
			body:   "",
			stderr: []string{"no such file"},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := writeFile(t, tc.body)
			if tc.name == "missing file" {
				path += ".absent"
			}
			var out, errOut bytes.Buffer
			code := run([]string{"validate", "-c", path}, &out, &errOut)
			if code != tc.code {
				t.Fatalf("exit %d, want %d\nstdout: %s\nstderr: %s", code, tc.code, &out, &errOut)
			}
			for _, s := range tc.stdout {
				if !strings.Contains(out.String(), s) {
					t.Errorf("stdout lacks %q:\n%s", s, &out)
				}
			}
			for _, s := range tc.stderr {
				if !strings.Contains(errOut.String(), s) {
					t.Errorf("stderr lacks %q:\n%s", s, &errOut)
				}
			}
			if tc.noStderr && errOut.Len() > 0 {
				t.Errorf("unexpected stderr: %s", &errOut)
			}
		})
	}
}

func TestUnknownCommandAndHelp(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := run([]string{"frobnicate"}, &out, &errOut); code != exitUsage || !strings.Contains(errOut.String(), `unknown command "frobnicate"`) {
		t.Fatalf("exit %d, stderr %s", code, &errOut)
	}
	out.Reset()
	if code := run([]string{"help"}, &out, &errOut); code != exitOK {
		t.Fatalf("help exit %d", code)
	}
	for _, c := range commands() {
		if !strings.Contains(out.String(), c.name) {
			t.Errorf("help does not list %s", c.name)
		}
	}
}

// TestDemoRunsAndShowsAcknowledgedRecords runs the demo with its embedded
// dev broker for a few seconds, as plain lines, and reads back what it
// printed: records must have been generated and acknowledged.
func TestDemoRunsAndShowsAcknowledgedRecords(t *testing.T) {
	var out, errOut bytes.Buffer
	code := run([]string{"demo", "--duration", "3s", "--interval", "50ms",
		"--metrics-listen", "127.0.0.1:0", "--health-listen", "127.0.0.1:0", "--pprof-listen", "off"}, &out, &errOut)
	if code != exitOK {
		t.Fatalf("demo exit %d\nstdout: %s\nstderr: %s", code, &out, &errOut)
	}
	text := out.String()
	for _, s := range []string{"embedded dev broker (kfake)", "for trying things out only", "demo stopped", "sim-0001/", "opc ua:    2 devices"} {
		if !strings.Contains(text, s) {
			t.Errorf("demo output lacks %q:\n%s", s, text)
		}
	}
	acked := regexp.MustCompile(` acked=(\d+) `).FindAllStringSubmatch(text, -1)
	if len(acked) == 0 {
		t.Fatalf("no status lines:\n%s", text)
	}
	last, _ := strconv.Atoi(acked[len(acked)-1][1])
	if last == 0 {
		t.Fatalf("demo acknowledged no records:\n%s", text)
	}
}
