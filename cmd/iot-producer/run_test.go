package main

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/iot-producer/iot-producer/agent/config"
	"github.com/iot-producer/iot-producer/internal/seqcheck"
)

// Fixed ports of these tests: below the kernel's ephemeral range and away
// from the agent's defaults, so they pass while `make run` runs.
const (
	runTestMetricsPort = 26081
	runTestHealthPort  = 26082
)

// TestRunRefusesWithExitConfig checks that run refuses what validate
// refuses, with the same message, and exits 78 so that systemd does not
// restart it in a loop.
func TestRunRefusesWithExitConfig(t *testing.T) {
	dir := t.TempDir()
	notDir := filepath.Join(dir, "file")
	if err := os.WriteFile(notDir, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	cases := map[string]string{
		"address beyond notation": "plcs:\n  - {name: a, driver: modbus, endpoint: 'h:502', tags: [{name: t, address: '70000', type: int16}]}\n",
		"float32 past the end":    "plcs:\n  - {name: a, driver: modbus, endpoint: 'h:502', tags: [{name: t, address: '65535', register: holding, type: float32}]}\n",
		"COM port":                "plcs:\n  - {name: a, driver: modbus, endpoint: COM3, tags: [{name: t, address: '1', type: int16}]}\n",
		"gateway id too long":     "gateway:\n  id: " + strings.Repeat("g", 300) + "\n",
		"missing CA file":         "producer:\n  tls:\n    enabled: true\n    ca_file: " + filepath.Join(dir, "nope.pem") + "\n",
		"state dir is a file":     "gateway:\n  state_dir: " + notDir + "\n",
		"no sink":                 "producer:\n  enabled: false\n",
		"opcua without tags":      "plcs:\n  - {name: a, driver: opcua, endpoint: 'opc.tcp://h:4840'}\n",
		"empty file":              "",
		"whitespace only":         "  \n\n",
	}
	for name, body := range cases {
		t.Run(name, func(t *testing.T) {
			path := writeFile(t, "gateway: {state_dir: "+dir+"}\n"+body)
			if body == "" || strings.TrimSpace(body) == "" {
				path = writeFile(t, body)
			}
			var vout, verr bytes.Buffer
			if code := run([]string{"validate", path}, &vout, &verr); code != exitUsage {
				t.Fatalf("validate exit %d, want %d\n%s%s", code, exitUsage, &vout, &verr)
			}
			var rout, rerr bytes.Buffer
			if code := run([]string{"run", "-c", path}, &rout, &rerr); code != exitConfig {
				t.Fatalf("run exit %d, want %d\n%s", code, exitConfig, &rerr)
			}
			// The same problems, in the same words.
			for _, line := range strings.Split(strings.TrimSpace(verr.String()), "\n")[1:] {
				if !strings.Contains(rerr.String(), strings.TrimSpace(line)) {
					t.Errorf("run does not say %q:\n%s", strings.TrimSpace(line), &rerr)
				}
			}
		})
	}
}

func TestRunHelpExitsZero(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := run([]string{"run", "-h"}, &out, &errOut); code != exitOK {
		t.Fatalf("run -h exit %d", code)
	}
}

// syncLog is a log the test reads while the agent writes it.
type syncLog struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *syncLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *syncLog) count(s string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Count(l.b.String(), s)
}

// waitCount waits until the log holds s n times.
func (l *syncLog) waitCount(t *testing.T, s string, n int) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for l.count(s) < n {
		if time.Now().After(deadline) {
			l.mu.Lock()
			defer l.mu.Unlock()
			t.Fatalf("log never said %q %d times:\n%s", s, n, l.b.String())
		}
		time.Sleep(10 * time.Millisecond) // polling the log, not synchronising
	}
}

// TestReloadNeverTakesTheGatewayDown reloads a running agent with a file
// that cannot be built, a file whose port is busy, and a good file
// written the way a Kubernetes ConfigMap update writes it (a ..data
// symlink swapped): the agent keeps running through all of them and
// /health answers throughout.
func TestReloadNeverTakesTheGatewayDown(t *testing.T) {
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.AllowAutoTopicCreation())
	if err != nil {
		t.Fatal(err)
	}
	defer cluster.Close()
	state := t.TempDir()
	good := func(metricsPort, count int) string {
		return fmt.Sprintf(`gateway: {id: gw-reload, state_dir: %q}
device: {count: %d, tags_per_device: 2, sample_interval: 10ms}
producer: {brokers: [%q], topic: reload-test}
telemetry: {metrics_listen: "127.0.0.1:%d", health_listen: "127.0.0.1:%d", pprof_listen: "off"}
`, state, count, cluster.ListenAddrs()[0], metricsPort, runTestHealthPort)
	}
	// The file is reached through ..data, as a ConfigMap volume does it.
	dir := t.TempDir()
	version := 0
	write := func(body string) {
		t.Helper()
		version++
		v := filepath.Join(dir, fmt.Sprintf("..v%d", version))
		if err := os.Mkdir(v, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(v, "config.yaml"), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		tmp := filepath.Join(dir, "..data_tmp")
		if err := os.Symlink(filepath.Base(v), tmp); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(dir, "..data")); err != nil {
			t.Fatal(err)
		}
	}
	write(good(runTestMetricsPort, 2))
	path := filepath.Join(dir, "config.yaml")
	if err := os.Symlink("..data/config.yaml", path); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	log := &syncLog{}
	sv := supervisor{path: path, log: slog.New(slog.NewTextHandler(log, nil))}
	ctx, cancel := context.WithCancel(context.Background())
	hup := make(chan os.Signal, 1)
	done := make(chan error, 1)
	go func() { done <- sv.run(ctx, cfg, hup) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	}()
	log.waitCount(t, "agent started", 1)

	health := func() {
		t.Helper()
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/health", runTestHealthPort))
		if err != nil {
			t.Fatalf("/health: %v", err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("/health: %s", resp.Status)
		}
	}
	health()

	// Files that cannot be built: each refused, the agent keeps running.
	notDir := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(notDir, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	plc := func(endpoint, tag string) string {
		return "plcs:\n  - {name: a, driver: modbus, endpoint: " + endpoint + ", tags: [" + tag + "]}\n"
	}
	refusals := []string{
		good(runTestMetricsPort, 2) + plc("COM3", "{name: t, address: '1', type: int16}"),
		good(runTestMetricsPort, 2) + plc("'h:502'", "{name: t, address: '70000', type: int16}"),
		good(runTestMetricsPort, 2) + plc("'h:502'", "{name: t, address: '99999', type: int16}"),
		good(runTestMetricsPort, 2) + plc("'h:502'", "{name: t, address: '65535', register: holding, type: float32}"),
		good(runTestMetricsPort, 2) + plc("'opc.tcp://h:4840'", "{name: t, address: 'ns=2;s=x', type: int16}"),
		strings.Replace(good(runTestMetricsPort, 2), "gateway: {id: gw-reload,", "gateway: {id: "+strings.Repeat("g", 300)+",", 1),
		strings.Replace(good(runTestMetricsPort, 2), "topic: reload-test}", "topic: reload-test, tls: {enabled: true, ca_file: /nonexistent/ca.pem}}", 1),
		strings.Replace(good(runTestMetricsPort, 2), "state_dir: \""+state+"\"", "state_dir: \""+notDir+"\"", 1),
		strings.Replace(good(runTestMetricsPort, 2), "topic: reload-test}", "topic: reload-test, enabled: false}", 1),
		"",
		"\t\n",
	}
	for i, body := range refusals {
		write(body)
		log.waitCount(t, "config reload refused; the running configuration is kept", i+1)
		health()
	}

	// A port in use: the new configuration does not start, the previous
	// one runs again.
	busy, err := net.Listen("tcp", "127.0.0.1:0") // held open: in use
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	write(good(busy.Addr().(*net.TCPAddr).Port, 2))
	log.waitCount(t, "starting the previous one again", 1)
	log.waitCount(t, "agent started", 2)
	health()

	// A good change, seen through the ..data swap alone.
	write(good(runTestMetricsPort, 3))
	log.waitCount(t, "config reloaded", 1)
	health()
	if n := log.count("config reloaded"); n != 1 {
		t.Errorf("config reloaded logged %d times, want once", n)
	}

	// SIGHUP with the file as it runs changes nothing.
	hup <- os.Interrupt // any value: the channel stands for SIGHUP
	log.waitCount(t, "config unchanged", 1)
	health()

	// No series lost a sequence number through all of it.
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("run: %v", err)
	}
	done <- nil // for the deferred stop
	checker := seqcheck.New()
	rctx, rcancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer rcancel()
	if err := checker.ReadTopic(rctx, cluster.ListenAddrs(), "reload-test"); err != nil {
		t.Fatal(err)
	}
	_, last, err := checker.AddBuffer(filepath.Join(state, "buffer.db"), "kafka")
	if err != nil {
		t.Fatal(err)
	}
	report := checker.Verify(last)
	t.Logf("delivery: %s", report)
	if report.Missing != 0 || report.Unexpected != 0 || report.Expected < 100 {
		t.Fatalf("delivery across reloads: %s", report)
	}
}
