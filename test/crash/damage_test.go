package crash

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/iot-producer/iot-producer/agent"
	"github.com/iot-producer/iot-producer/agent/config"
	"github.com/iot-producer/iot-producer/agent/ingest"
	"github.com/iot-producer/iot-producer/buffer"
	_ "github.com/iot-producer/iot-producer/plugins/all"
	"github.com/iot-producer/iot-producer/record"
	"github.com/iot-producer/iot-producer/telemetry"
)

// Environment of this test binary run as the buffer's isolation child.
const (
	isolateOpEnv   = "IOT_PRODUCER_CRASH_ISOLATE_OP"
	isolatePathEnv = "IOT_PRODUCER_CRASH_ISOLATE_PATH"
)

// isolate runs bbolt's checks in a child process of this test binary, as
// the installed binary does with itself.
func isolate(op, path string) *exec.Cmd {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), isolateOpEnv+"="+op, isolatePathEnv+"="+path)
	return cmd
}

// runIsolationChild runs the isolation child when this binary was started
// as one, and reports whether it was.
func runIsolationChild() bool {
	op := os.Getenv(isolateOpEnv)
	if op == "" {
		return false
	}
	if err := buffer.RunChild(op, os.Getenv(isolatePathEnv), os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	return true
}

const damageTopic = "iot-damage"

// agentConfig is a gateway of 10 simulated devices × 4 tags every 10 ms
// with its state in dir, sending to broker.
func agentConfig(t *testing.T, dir, broker string) *config.Config {
	t.Helper()
	cfg, err := config.Parse([]byte(fmt.Sprintf(`
gateway: {id: gw-damage, state_dir: %q}
device: {count: 10, tags_per_device: 4, sample_interval: 10ms, seed: 5}
buffer: {commit_interval: 5ms}
producer:
  brokers: [%q]
  topic: %s
  batch_size: 500
  flush_interval: 5ms
  delivery_timeout: 1s
telemetry: {metrics_listen: "127.0.0.1:0", health_listen: "127.0.0.1:0", pprof_listen: "off"}
`, dir, broker, damageTopic)), "damage test")
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// startAgent runs an agent with bbolt isolated, logging into logs, until
// it is ready.
func startAgent(t *testing.T, cfg *config.Config, logs *logSink) (*agent.Agent, func()) {
	t.Helper()
	ready := make(chan struct{})
	a, err := agent.New(cfg, agent.Options{
		Logger:        slog.New(slog.NewTextHandler(logs, nil)),
		OnReady:       func() { close(ready) },
		BufferIsolate: isolate,
	})
	if err != nil {
		t.Fatalf("agent.New: %v\n%s", err, logs.String())
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	select {
	case <-ready:
	case err := <-done:
		cancel()
		t.Fatalf("agent stopped before it was ready: %v\n%s", err, logs.String())
	}
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil {
			t.Errorf("agent: %v", err)
		}
	}
	t.Cleanup(stop)
	return a, stop
}

// backlogFile runs the agent against a broker that refuses connections
// until its buffer holds at least n records, and returns the file's bytes,
// its epoch and the last sequence number of every series.
func backlogFile(t *testing.T, n int64) ([]byte, string, map[ingest.Series]uint64) {
	t.Helper()
	dir := t.TempDir()
	logs := &logSink{}
	a, stop := startAgent(t, agentConfig(t, dir, "127.0.0.1:1"), logs)
	waitFor(t, "a backlog", time.Minute, func() bool { return a.Buffer().Queue("kafka").Stats().Records >= n })
	stop()
	path := filepath.Join(dir, "buffer.db")
	ro, err := buffer.Open(path, buffer.Options{ReadOnly: true, Isolate: isolate})
	if err != nil {
		t.Fatal(err)
	}
	last, err := ingest.LastSeqs(ro)
	if err != nil {
		t.Fatal(err)
	}
	epoch := ro.Epoch()
	if err := ro.Close(); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return data, epoch, last
}

// consumed is what a consumer following the README's rules keeps of the
// topic: per (epoch, series), the sequence numbers seen.
type consumed map[string]map[ingest.Series]map[uint64]record.Fields

func readTopic(t *testing.T, broker string) consumed {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cl, err := kgo.NewClient(kgo.SeedBrokers(broker), kgo.ConsumeTopics(damageTopic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxWait(200*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ends, err := kadm.NewClient(cl).ListEndOffsets(ctx, damageTopic)
	if err != nil || ends.Error() != nil {
		t.Fatalf("end offsets: %v %v", err, ends.Error())
	}
	remaining := map[int32]int64{}
	ends.Each(func(o kadm.ListedOffset) {
		if o.Offset > 0 {
			remaining[o.Partition] = o.Offset
		}
	})
	out := consumed{}
	for len(remaining) > 0 {
		fetches := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("reading the topic: %v", ctx.Err())
		}
		for _, e := range fetches.Errors() {
			t.Fatalf("fetch: %v", e.Err)
		}
		fetches.EachRecord(func(r *kgo.Record) {
			f, err := record.Decode(r.Value)
			if err != nil {
				t.Fatalf("record %s: %v", r.Value, err)
			}
			s := ingest.Series{Device: f.Device, Tag: f.Tag}
			if out[f.Epoch] == nil {
				out[f.Epoch] = map[ingest.Series]map[uint64]record.Fields{}
			}
			if out[f.Epoch][s] == nil {
				out[f.Epoch][s] = map[uint64]record.Fields{}
			}
			out[f.Epoch][s][f.Seq] = f
			if end, ok := remaining[r.Partition]; ok && r.Offset+1 >= end {
				delete(remaining, r.Partition)
			}
		})
	}
	return out
}

// TestAgentSurvivesDamage applies each damage of the table to a
// real backlog (the agent's own file, written while its broker was
// unreachable) and starts the agent on it against a broker: it starts,
// sends every record it recovered, says what it recovered and lost in
// /ready, the log and the metrics, and what a consumer reads shows every
// loss: a gap in a series that goes on in the same epoch, or a new epoch.
func TestAgentSurvivesDamage(t *testing.T) {
	orig, epoch0, last0 := backlogFile(t, 20000)
	var total uint64
	for _, n := range last0 {
		total += n
	}
	rng := rand.New(rand.NewPCG(7, 8))
	random := func(d []byte, off, n int) []byte {
		for i := off; i < min(len(d), off+n); i++ {
			d[i] = byte(rng.Uint32())
		}
		return d
	}
	cases := []struct {
		name   string
		damage func(d []byte) []byte
		// all: every committed record must arrive; kept: the sequence
		// state must be carried over ("yes"), or a new epoch start
		// ("no"). When bbolt falls back to the meta page one commit
		// older, the salvage replays the last commit from the raw scan.
		all  bool
		kept string
	}{
		{"64KiB random in the middle", func(d []byte) []byte { return random(d, len(d)/2, 64<<10) }, false, "yes"},
		{"200 bytes inside one page", func(d []byte) []byte { return random(d, len(d)/3+1000, 200) }, false, "yes"},
		{"first 4KiB", func(d []byte) []byte { return random(d, 0, 4096) }, true, "yes"},
		{"both meta pages", func(d []byte) []byte { return random(d, 0, 8192) }, true, "no"},
		{"whole file random", func(d []byte) []byte { return random(d, 0, len(d)) }, false, "no"},
		{"zero-length", func([]byte) []byte { return nil }, false, "no"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(3, damageTopic))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(cluster.Close)
			broker := cluster.ListenAddrs()[0]
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, "buffer.db"), tc.damage(bytes.Clone(orig)), 0o600); err != nil {
				t.Fatal(err)
			}
			logs := &logSink{}
			restart := time.Now()
			a, stop := startAgent(t, agentConfig(t, dir, broker), logs)
			r := a.Buffer().Recovery()
			q := a.Buffer().Queue("kafka")
			waitFor(t, "the recovered backlog sent", time.Minute, func() bool {
				o := q.Stats().Oldest
				return o.IsZero() || o.After(restart)
			})
			// Every series goes on after the restart.
			waitFor(t, "new samples of every series", time.Minute, func() bool {
				for s, n := range last0 {
					if a.Buffer().Epoch() != epoch0 {
						n = 0
					}
					if ingestLast(a, s) <= n {
						return false
					}
				}
				return true
			})
			mark := time.Now()
			waitFor(t, "the new samples sent", time.Minute, func() bool {
				o := q.Stats().Oldest
				return o.IsZero() || o.After(mark)
			})
			var health telemetry.ComponentStatus
			var snap telemetry.MetricsSnapshot
			// /ready follows the frames found corrupt while sending (it is
			// refreshed every second).
			waitFor(t, "/ready to show the records lost", time.Minute, func() bool {
				for _, c := range a.Health().Snapshot() {
					if c.Name == "buffer" {
						health = c
					}
				}
				snap = telemetry.Snapshot(a.Metrics())
				return snap.Get("iot_buffer_dropped_records_total", "reason", "corrupt") == 0 || strings.Contains(health.Detail, "lost")
			})
			epoch1 := a.Buffer().Epoch()
			stop()

			got := readTopic(t, broker)
			delivered := uint64(0)
			for s, seqs := range got[epoch0] {
				for seq := range seqs {
					if seq <= last0[s] {
						delivered++
					}
				}
			}
			missing := total - delivered
			t.Logf("%d of %d backlog records delivered, %d missing; recovery: %d recovered, %d known lost, state lost %q; /ready buffer: %s %q",
				delivered, total, missing, r.RecordsRecovered, r.RecordsLost, r.StateLost, health.State, health.Detail)

			if tc.all && missing != 0 {
				t.Errorf("%d records missing, want every one", missing)
			}
			kept := len(r.StateLost) == 0
			if (tc.kept == "yes" && !kept) || (tc.kept == "no" && kept) || kept != (epoch1 == epoch0) {
				t.Errorf("state kept %v (epoch %s, was %s), want %s", kept, epoch1, epoch0, tc.kept)
			}
			// The loss shows: in the old epoch, the series go on above
			// every number they had (no number is used twice, so a
			// missing one is a gap); or the new records are in a new
			// epoch.
			for s, n := range last0 {
				for seq, f := range got[epoch0][s] {
					if seq <= n && f.ReadTime.After(restart) {
						t.Fatalf("%v: seq %d of epoch %s used again after the restart", s, seq, epoch0)
					}
				}
				if kept && len(got[epoch0][s]) > 0 {
					maxSeq := uint64(0)
					for seq := range got[epoch0][s] {
						maxSeq = max(maxSeq, seq)
					}
					if maxSeq <= n {
						t.Errorf("%v: nothing above seq %d arrived in epoch %s: a loss at its end would not show", s, n, epoch0)
					}
				}
				if !kept && len(got[epoch1][s]) == 0 {
					t.Errorf("%v: nothing arrived in the new epoch %s", s, epoch1)
				}
			}
			// The ranges announced lost are really missing (each number
			// of them not delivered), and /ready and the metrics say so.
			inRanges := uint64(0)
			for _, l := range r.LostRanges {
				for s := range last0 {
					if strconv.Quote(s.Device)+"/"+strconv.Quote(s.Tag) != l.Series {
						continue
					}
					for seq := l.From; seq <= l.To && l.To > 0; seq++ {
						if _, ok := got[epoch0][s][seq]; ok {
							t.Errorf("range %+v announced lost, seq %d arrived", l, seq)
						}
					}
				}
				inRanges += l.Len()
			}
			t.Logf("%d numbers in %d lost ranges of %d series announced (%d listed cover %d)", r.LostSeqs, r.LostRangeCount, r.LostSeries, len(r.LostRanges), inRanges)
			if r.LostSeries > 0 {
				if !strings.Contains(health.Detail, "sequence numbers known lost") || snap.Sum("iot_buffer_salvage_lost_series") != float64(r.LostSeries) ||
					snap.Sum("iot_buffer_salvage_lost_sequence_numbers_total") != float64(r.LostSeqs) {
					t.Errorf("lost ranges not announced: /ready %q, metrics %v series %v numbers", health.Detail,
						snap.Sum("iot_buffer_salvage_lost_series"), snap.Sum("iot_buffer_salvage_lost_sequence_numbers_total"))
				}
			}
			// The rest is announced.
			if missing > 0 && len(r.StateLost) == 0 && r.RecordsLost == 0 && snap.Sum("iot_buffer_dropped_records_total") == 0 {
				t.Errorf("%d records missing and no loss announced", missing)
			}
			if corrupt := snap.Get("iot_buffer_dropped_records_total", "reason", "corrupt"); corrupt > 0 && !strings.Contains(health.Detail, "lost") {
				t.Errorf("%v records dropped as corrupt and /ready says %q", corrupt, health.Detail)
			}
			if r.Quarantined != "" || len(r.StateLost) > 0 {
				if health.State != telemetry.StateDegraded {
					t.Errorf("/ready buffer %s %q, want degraded with the recovery", health.State, health.Detail)
				}
				if got := snap.Sum("iot_buffer_salvaged_records_total"); got != float64(r.RecordsRecovered) {
					t.Errorf("iot_buffer_salvaged_records_total %v, recovery says %d", got, r.RecordsRecovered)
				}
			}
			if r.Quarantined != "" && !strings.Contains(logs.String(), "records_recovered=") {
				t.Errorf("the log does not count what was recovered")
			}
			if len(r.StateLost) > 0 {
				if !strings.Contains(health.Detail, "new stream epoch") || snap.Sum("iot_buffer_sequence_state_lost") != 1 {
					t.Errorf("state lost not announced: /ready %q, metric %v", health.Detail, snap.Sum("iot_buffer_sequence_state_lost"))
				}
			}
		})
	}
}

// ingestLast is the last sequence number the agent's ingest stage gave a
// series (0 before its first sample since the start).
func ingestLast(a *agent.Agent, s ingest.Series) uint64 {
	last, err := ingest.LastSeqs(a.Buffer())
	if err != nil {
		return 0
	}
	return last[s]
}
