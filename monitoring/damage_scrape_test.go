package monitoring

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/iot-producer/iot-producer/buffer"
	"github.com/iot-producer/iot-producer/internal/faultproxy/kfakeproxy"
	"github.com/iot-producer/iot-producer/telemetry"
)

// Environment of this test binary run as the buffer's isolation child.
const (
	isolateOpEnv   = "IOT_PRODUCER_MONITORING_ISOLATE_OP"
	isolatePathEnv = "IOT_PRODUCER_MONITORING_ISOLATE_PATH"
)

// TestMain runs the buffer's isolation child when this binary was started
// as one (bbolt reading a damaged file in a process of its own, as the
// installed binary does), and the tests otherwise.
func TestMain(m *testing.M) {
	if op := os.Getenv(isolateOpEnv); op != "" {
		if err := buffer.RunChild(op, os.Getenv(isolatePathEnv), os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		return
	}
	os.Exit(m.Run())
}

// isolate runs bbolt's checks in a child process of this test binary.
func isolate(op, path string) *exec.Cmd {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), isolateOpEnv+"="+op, isolatePathEnv+"="+path)
	return cmd
}

// readyComponent returns a component of the agent's /ready, read over
// HTTP as a probe does.
func (r *agentRun) readyComponent(name string) (telemetry.ComponentStatus, bool) {
	r.t.Helper()
	resp, err := http.Get("http://" + r.a.Addrs().Health + "/ready")
	if err != nil {
		r.t.Fatalf("/ready: %v", err)
	}
	defer resp.Body.Close()
	var body struct {
		Components []telemetry.ComponentStatus `json:"components"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		r.t.Fatalf("/ready: %v", err)
	}
	for _, c := range body.Components {
		if c.Name == name {
			return c, true
		}
	}
	return telemetry.ComponentStatus{}, false
}

// waitReady reads /ready until component name is in state with a detail
// containing each of details, for up to a minute.
func (r *agentRun) waitReady(name string, state telemetry.State, details ...string) telemetry.ComponentStatus {
	r.t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		c, ok := r.readyComponent(name)
		good := ok && c.State == state
		for _, d := range details {
			good = good && strings.Contains(c.Detail, d)
		}
		if good {
			return c
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("timed out waiting for /ready %s to be %s with %q: it is %s %q", name, state, details, c.State, c.Detail)
		}
		time.Sleep(20 * time.Millisecond) // polling /ready
	}
}

// backlogFile runs the scenario agent with its broker cut until its
// buffer holds a backlog, stops it, and returns the buffer file's path and
// bytes.
func backlogFile(t *testing.T) (string, []byte) {
	t.Helper()
	dir := t.TempDir()
	r := startScenarioAgentIn(t, dir, "", func(c *kfakeproxy.Cluster) { c.Cut() })
	r.waitMetric("a backlog", above("kafka_producer_buffer_depth", 5000, "sink", "kafka"))
	if err := r.stop(); err != nil {
		t.Fatalf("agent: %v", err)
	}
	path := filepath.Join(dir, "buffer.db")
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return path, data
}

// TestScrapedDamageMoves damages the buffer file of a stopped agent (its
// backlog, written while the broker was cut), starts an agent on it with
// the broker up, and scrapes /metrics and /ready from outside: the series
// each damage is about must move, /ready must say what was lost, and
// every name of the contract, the rules and the dashboard stays exported.
//
//   - Frames damaged in place (one byte of every record's gateway ID
//     flipped: bbolt's pages stay consistent, each frame fails its
//     checksum when the sink reads it): iot_buffer_dropped_records_total
//     {queue="kafka",reason="corrupt"}, and /ready's buffer entry counts
//     the records lost in corrupt frames.
//   - Both meta pages destroyed (bbolt cannot open the file: it is moved
//     aside and every intact frame salvaged, but the sequence state is
//     gone): iot_buffer_salvaged_records_total and
//     iot_buffer_sequence_state_lost, and /ready says a new stream epoch
//     started.
//   - The first meta page destroyed and the records of the middle third of
//     the frames damaged (the file is moved aside, bbolt's other meta page
//     keeps the sequence state, and frames whose header survived and whose
//     records did not lie between intact ones):
//     iot_buffer_salvage_lost_records_total, iot_buffer_salvage_lost_series
//     and iot_buffer_salvage_lost_sequence_numbers_total, and /ready names
//     the ranges lost.
func TestScrapedDamageMoves(t *testing.T) {
	if testing.Short() {
		t.Skip("starts agents and brokers")
	}
	names := usedNames(t)
	_, orig := backlogFile(t)
	tests := []struct {
		name    string
		damage  func(t *testing.T, d []byte) []byte
		want    []cond
		details []string // in /ready's buffer entry
	}{
		{
			name:   "frames damaged in place",
			damage: flipRecords,
			want: []cond{
				above("iot_buffer_dropped_records_total", 0, "queue", "kafka", "reason", "corrupt"),
			},
			details: []string{"corrupt frames since the start"},
		},
		{
			name:   "both meta pages",
			damage: func(t *testing.T, d []byte) []byte { return destroyMeta(t, d, 8192) },
			want: []cond{
				above("iot_buffer_salvaged_records_total", 0),
				above("iot_buffer_sequence_state_lost", 0.5),
			},
			details: []string{"moved aside", "new stream epoch"},
		},
		{
			name: "first meta page and the frames in the middle third",
			damage: func(t *testing.T, d []byte) []byte {
				id := []byte("gw-scrape")
				first, last := bytes.Index(d, id), bytes.LastIndex(d, id)
				flipRecords(t, d[first+(last-first)/3:first+2*(last-first)/3])
				return destroyMeta(t, d, 4096)
			},
			want: []cond{
				above("iot_buffer_salvage_lost_records_total", 0),
				above("iot_buffer_salvage_lost_series", 0),
				above("iot_buffer_salvage_lost_sequence_numbers_total", 0),
			},
			details: []string{"moved aside", "known lost", "sequence numbers known lost"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, "buffer.db"), tt.damage(t, bytes.Clone(orig)), 0o600); err != nil {
				t.Fatal(err)
			}
			r := startScenarioAgentIn(t, dir, "", nil)
			s := r.waitMetric("the damage's series to move", append(tt.want, allExported(names))...)
			c := r.waitReady("buffer", telemetry.StateDegraded, tt.details...)
			t.Logf("/ready buffer: %s %q", c.State, c.Detail)
			for _, name := range contract {
				if _, ok := s[name]; !ok {
					t.Errorf("contract metric %s not exported", name)
				}
			}
			for _, name := range names {
				if !s.has(name) {
					t.Errorf("%s, used by the rules or the dashboard, not exported", name)
				}
			}
		})
	}
}

// flipRecords flips one byte of every record's gateway ID in (part of) a
// buffer file: bbolt's pages stay consistent, and every frame holding one
// fails its checksum.
func flipRecords(t *testing.T, d []byte) []byte {
	t.Helper()
	id := []byte("gw-scrape")
	n := 0
	for i := 0; ; {
		j := bytes.Index(d[i:], id)
		if j < 0 {
			break
		}
		d[i+j+1] ^= 0xff
		i += j + len(id)
		n++
	}
	if n == 0 {
		t.Fatal("no record's gateway ID in the file")
	}
	return d
}

// destroyMeta overwrites the first n bytes of a buffer file: 4096, the
// first of bbolt's meta pages (it falls back to the other one); 8192,
// both.
func destroyMeta(_ *testing.T, d []byte, n int) []byte {
	for i := range n {
		d[i] = byte(i*7 + 13)
	}
	return d
}
