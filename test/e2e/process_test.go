//go:build e2e

package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/iot-producer/iot-producer/internal/seqcheck"
)

var agentBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "iot-producer-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	agentBin = filepath.Join(dir, "iot-producer")
	build := exec.Command("go", "build", "-o", agentBin, "github.com/iot-producer/iot-producer/cmd/iot-producer")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build the agent:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// kafkaBrokers returns the brokers scripts/e2e.sh started. The e2e tests
// need a real broker: without one they fail, they are never skipped.
func kafkaBrokers(t *testing.T) []string {
	t.Helper()
	v := os.Getenv("KAFKA_BROKERS")
	if v == "" {
		t.Fatal("KAFKA_BROKERS is not set: run the e2e tests with `make e2e` (scripts/e2e.sh starts the broker)")
	}
	return strings.Split(v, ",")
}

// agentProc is one running agent binary.
type agentProc struct {
	cmd     *exec.Cmd
	metrics string // host:port of /metrics
	health  string // host:port of /ready
	done    chan struct{}

	mu     sync.Mutex
	output bytes.Buffer
}

var startedLine = regexp.MustCompile(`msg="agent started".* metrics=(\S+) health=(\S+)`)

// startAgent runs `iot-producer run -c cfg` and waits until it logs that
// it started, which gives its telemetry addresses.
func startAgent(t *testing.T, cfg string) *agentProc {
	t.Helper()
	return startAgentEnv(t, cfg)
}

// startAgentEnv is startAgent with variables (NAME=value) added to the
// agent's environment.
func startAgentEnv(t *testing.T, cfg string, env ...string) *agentProc {
	t.Helper()
	a := &agentProc{cmd: exec.Command(agentBin, "run", "-c", cfg), done: make(chan struct{})}
	if len(env) > 0 {
		a.cmd.Env = append(os.Environ(), env...)
	}
	stderr, err := a.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := a.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	started := make(chan [2]string, 1)
	go func() {
		defer close(a.done)
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64*1024), 1024*1024)
		for sc.Scan() {
			line := sc.Text()
			a.mu.Lock()
			a.output.WriteString(line + "\n")
			a.mu.Unlock()
			if m := startedLine.FindStringSubmatch(line); m != nil {
				started <- [2]string{m[1], m[2]}
			}
		}
		_, _ = io.Copy(io.Discard, stderr)
	}()
	t.Cleanup(func() {
		if a.cmd.ProcessState == nil {
			_ = a.cmd.Process.Kill()
			<-a.done
			_ = a.cmd.Wait()
		}
	})
	select {
	case addrs := <-started:
		a.metrics, a.health = addrs[0], addrs[1]
	case <-a.done:
		_ = a.cmd.Wait()
		t.Fatalf("agent exited before it started:\n%s", a.log())
	case <-time.After(30 * time.Second):
		t.Fatalf("agent did not start within 30s:\n%s", a.log())
	}
	return a
}

func (a *agentProc) log() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.output.String()
}

// counter scrapes one counter summed over its series from /metrics.
func (a *agentProc) counter(name string) (float64, error) {
	resp, err := http.Get("http://" + a.metrics + "/metrics")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var sum float64
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name+"{") && !strings.HasPrefix(line, name+" ") {
			continue
		}
		v, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
		if err != nil {
			return 0, fmt.Errorf("parse %q: %w", line, err)
		}
		sum += v
	}
	return sum, sc.Err()
}

// waitAcked polls /metrics until kafka_messages_sent_total reaches n.
func (a *agentProc) waitAcked(t *testing.T, n float64, limit time.Duration) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		got, err := a.counter("kafka_messages_sent_total")
		if err != nil {
			t.Fatalf("scrape metrics: %v\n%s", err, a.log())
		}
		if got >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("only %.0f of %.0f records acknowledged after %s:\n%s", got, n, limit, a.log())
		}
		select {
		case <-a.done:
			t.Fatalf("agent exited:\n%s", a.log())
		case <-time.After(100 * time.Millisecond): // scrape interval
		}
	}
}

// stop sends sig and waits for the process to exit; it returns the exit
// code (-1 when killed by a signal).
func (a *agentProc) stop(t *testing.T, sig syscall.Signal, limit time.Duration) int {
	t.Helper()
	if err := a.cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
	select {
	case <-a.done:
	case <-time.After(limit):
		_ = a.cmd.Process.Kill()
		t.Fatalf("agent did not exit within %s of %v:\n%s", limit, sig, a.log())
	}
	_ = a.cmd.Wait()
	return a.cmd.ProcessState.ExitCode()
}

// refreshAddrs reads the telemetry addresses from the last "agent
// started" line (after a reload the listeners are new).
func (a *agentProc) refreshAddrs(t *testing.T) {
	t.Helper()
	all := startedLine.FindAllStringSubmatch(a.log(), -1)
	if len(all) == 0 {
		t.Fatalf("no start line:\n%s", a.log())
	}
	a.metrics, a.health = all[len(all)-1][1], all[len(all)-1][2]
}

// waitLog waits until the agent's log contains s.
func (a *agentProc) waitLog(t *testing.T, s string, limit time.Duration) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !strings.Contains(a.log(), s) {
		if time.Now().After(deadline) {
			t.Fatalf("log has no %q after %s:\n%s", s, limit, a.log())
		}
		select {
		case <-a.done:
			t.Fatalf("agent exited while waiting for %q:\n%s", s, a.log())
		case <-time.After(20 * time.Millisecond): // log poll interval
		}
	}
}

// intervalKey matches the keys that pace the sources of a configuration:
// the simulator's sample_interval and a PLC's poll_interval.
var intervalKey = regexp.MustCompile(`\b(sample_interval|poll_interval): *[0-9a-z]+`)

// stopDrained ends a run whose delivery is then checked by sequence
// numbers, so that the check can require an empty buffer: a record left
// in it was not delivered. As an operator would, it rewrites the
// configuration file with every source paced to one reading a year (the
// simulator spreads its devices over the interval: its next slot comes
// days later) and waits for the agent to apply it ("config reloaded": each
// source restarts, reads once and falls quiet); then it waits, in
// /metrics, for every sink's queue (kafka_producer_buffer_depth) and the
// ingest stage (iot_ingest_pending_samples) to be empty, three scrapes in
// a row with no sample generated in between (device_data_generated_total),
// and stops the agent with SIGTERM, which must exit 0. requireDrained
// checks the file afterwards. edits, when given, change the quiet file
// further (a source whose first reading is slow is better disabled).
func (a *agentProc) stopDrained(t *testing.T, limit time.Duration, edits ...func([]byte) []byte) {
	t.Helper()
	path := a.cmd.Args[len(a.cmd.Args)-1]
	old, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	quiet := intervalKey.ReplaceAll(old, []byte("${1}: 8760h"))
	for _, edit := range edits {
		quiet = edit(quiet)
	}
	if bytes.Equal(quiet, old) {
		t.Fatalf("%s paces no source (sample_interval, poll_interval):\n%s", path, old)
	}
	reloads := strings.Count(a.log(), `msg="config reloaded"`)
	// Renamed into place, so that the agent's watch never reads it half
	// written.
	tmp := path + ".new"
	if err := os.WriteFile(tmp, quiet, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(limit)
	for strings.Count(a.log(), `msg="config reloaded"`) == reloads {
		if time.Now().After(deadline) {
			t.Fatalf("the quiet configuration was not applied within %s:\n%s", limit, a.tail(40))
		}
		select {
		case <-a.done:
			t.Fatalf("agent exited:\n%s", a.log())
		case <-time.After(20 * time.Millisecond): // log poll interval
		}
	}
	a.refreshAddrs(t)
	// The samples generated at the last scrapes that found everything
	// empty, and how many scrapes in a row did.
	settled, calm := -1.0, 0
	for {
		depth, err := a.counter("kafka_producer_buffer_depth")
		var pending, generated float64
		if err == nil {
			pending, err = a.counter("iot_ingest_pending_samples")
		}
		if err == nil {
			generated, err = a.counter("device_data_generated_total")
		}
		if err == nil && depth == 0 && pending == 0 && generated == settled {
			calm++
		} else {
			settled, calm = generated, 0
			if depth != 0 || pending != 0 {
				settled = -1
			}
		}
		if calm == 2 {
			break
		}
		if err != nil {
			t.Fatalf("scrape metrics: %v\n%s", err, a.tail(40))
		}
		if time.Now().After(deadline) {
			t.Fatalf("the buffer was not drained within %s (depth %.0f):\n%s", limit, depth, a.tail(40))
		}
		select {
		case <-a.done:
			t.Fatalf("agent exited:\n%s", a.log())
		case <-time.After(100 * time.Millisecond): // scrape interval
		}
	}
	if code := a.stop(t, syscall.SIGTERM, 30*time.Second); code != 0 {
		t.Fatalf("exit %d after SIGTERM:\n%s", code, a.tail(40))
	}
}

// requireDrained fails t when the buffer file at path still holds records
// for queue: the run was ended with stopDrained, so a record left there
// was not delivered.
func requireDrained(t *testing.T, path, queue string) {
	t.Helper()
	left, _, err := seqcheck.New().AddBuffer(path, queue)
	if err != nil {
		t.Fatal(err)
	}
	if left != 0 {
		t.Fatalf("%d records still in the %s queue of %s after the agent drained and stopped: not delivered", left, queue, path)
	}
}

// readyComponent is one component of /ready.
type readyComponent struct {
	State  string `json:"state"`
	Detail string `json:"detail"`
}

// ready reads /ready's components by name.
func (a *agentProc) ready(t *testing.T) map[string]readyComponent {
	t.Helper()
	resp, err := http.Get("http://" + a.health + "/ready")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct {
		Components []struct {
			Name string `json:"name"`
			readyComponent
		} `json:"components"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatalf("decoding /ready: %v", err)
	}
	out := map[string]readyComponent{}
	for _, c := range body.Components {
		out[c.Name] = c.readyComponent
	}
	return out
}
