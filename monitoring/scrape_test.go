package monitoring

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"

	dto "github.com/prometheus/client_model/go"

	"github.com/iot-producer/iot-producer/agent"
	"github.com/iot-producer/iot-producer/agent/config"
	"github.com/iot-producer/iot-producer/internal/faultproxy/kfakeproxy"
	"github.com/iot-producer/iot-producer/internal/kfakefault"
	_ "github.com/iot-producer/iot-producer/plugins/all"
)

// contract is the metrics contract of the design (docs/design.md): the
// names the operations manual's queries divide by each other.
var contract = []string{
	"kafka_messages_sent_total",
	"kafka_send_errors_total",
	"kafka_batches_sent_total",
	"kafka_send_duration_seconds",
	"kafka_producer_buffer_depth",
	"device_data_generated_total",
	"iot_sample_delivery_seconds",
}

// scraped is one scrape of a running agent's /metrics, parsed.
type scraped map[string]*dto.MetricFamily

// value returns the sum of the series of family name (a histogram's sample
// count) whose labels include every pair of match, and whether any did.
func (s scraped) value(name string, match ...string) (float64, bool) {
	f, ok := s[name]
	if !ok {
		return 0, false
	}
	var sum float64
	found := false
series:
	for _, m := range f.GetMetric() {
		labels := map[string]string{}
		for _, lp := range m.GetLabel() {
			labels[lp.GetName()] = lp.GetValue()
		}
		for i := 0; i+1 < len(match); i += 2 {
			if labels[match[i]] != match[i+1] {
				continue series
			}
		}
		found = true
		switch {
		case m.Counter != nil:
			sum += m.GetCounter().GetValue()
		case m.Gauge != nil:
			sum += m.GetGauge().GetValue()
		case m.Histogram != nil:
			sum += float64(m.GetHistogram().GetSampleCount())
		}
	}
	return sum, found
}

// has reports whether a query's metric name is exported: a family, or the
// _bucket, _sum or _count of a histogram.
func (s scraped) has(name string) bool {
	if _, ok := s[name]; ok {
		return true
	}
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		if base, ok := strings.CutSuffix(name, suffix); ok {
			if f, ok := s[base]; ok && (f.GetType() == dto.MetricType_HISTOGRAM || suffix != "_bucket" && f.GetType() == dto.MetricType_SUMMARY) {
				return true
			}
		}
	}
	return false
}

// scrapeAgent fetches http://addr/metrics as Prometheus does.
func scrapeAgent(t *testing.T, addr string) scraped {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatalf("scrape: %v", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("scrape: status %d, %v", resp.StatusCode, err)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(string(body)))
	if err != nil {
		t.Fatalf("scrape: parse: %v", err)
	}
	return fams
}

// usedNames returns every metric name the alert rules, their unit tests'
// queries and the dashboard's panels use, but for the series Prometheus
// makes itself.
func usedNames(t *testing.T) []string {
	t.Helper()
	var exprs []string
	for _, r := range loadRules(t) {
		exprs = append(exprs, r.Expr)
	}
	panels, _ := allPanels(loadDashboard(t))
	for _, p := range panels {
		for _, tg := range p.Targets {
			exprs = append(exprs, tg.Expr)
		}
	}
	set := map[string]bool{}
	for _, e := range exprs {
		sels, err := selectors(e)
		if err != nil {
			t.Fatalf("cannot read %q: %v", e, err)
		}
		for _, s := range sels {
			if !synthetic[s.name] {
				set[s.name] = true
			}
		}
	}
	names := make([]string, 0, len(set))
	for n := range set {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// agentRun is one agent started for a scenario.
type agentRun struct {
	t       *testing.T
	cluster *kfakeproxy.Cluster
	a       *agent.Agent
	// stop stops the agent and returns what its Run returned (nil when it
	// was stopped already); the test's cleanup stops it too.
	stop func() error
}

// startScenarioAgent starts an agent with the simulator, a Modbus PLC
// nobody answers for, and the Kafka sink on a kfake cluster behind a fault
// proxy; extra is YAML appended to the buffer section.
func startScenarioAgent(t *testing.T, buffer string, before func(*kfakeproxy.Cluster)) *agentRun {
	t.Helper()
	return startScenarioAgentIn(t, t.TempDir(), buffer, before)
}

// startScenarioAgentIn is startScenarioAgent with the agent's state (its
// buffer file) in dir.
func startScenarioAgentIn(t *testing.T, dir, buffer string, before func(*kfakeproxy.Cluster)) *agentRun {
	t.Helper()
	cluster, err := kfakeproxy.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "iot-scrape"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cluster.Close)
	if before != nil {
		before(cluster)
	}
	cfg, err := config.Parse([]byte(fmt.Sprintf(`
gateway: {id: gw-scrape, state_dir: %q}
device: {enabled: true, count: 10, tags_per_device: 4, sample_interval: 5ms, name_prefix: sim}
plcs:
  - name: press
    driver: modbus
    endpoint: 127.0.0.1:27001
    poll_interval: 50ms
    timeout: 50ms
    connect_timeout: 50ms
    tags: [{name: temp, address: "0", register: holding, type: int16}]
buffer: {commit_interval: 5ms%s}
producer: {brokers: [%q], topic: iot-scrape, batch_size: 200, flush_interval: 5ms, delivery_timeout: 1s, live_window: 500ms}
telemetry: {metrics_listen: "127.0.0.1:0", health_listen: "127.0.0.1:0", pprof_listen: "off"}
`, dir, buffer, cluster.ListenAddrs()[0])), "scrape test")
	if err != nil {
		t.Fatal(err)
	}
	ready := make(chan struct{})
	a, err := agent.New(cfg, agent.Options{Logger: slog.New(slog.DiscardHandler), OnReady: func() { close(ready) }, BufferIsolate: isolate})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	stopped := false
	stop := func() error {
		if stopped {
			return nil
		}
		stopped = true
		cancel()
		return <-done
	}
	t.Cleanup(func() {
		if err := stop(); err != nil {
			t.Errorf("agent: %v", err)
		}
	})
	select {
	case <-ready:
	case err := <-done:
		stopped = true
		t.Fatalf("agent stopped before it was ready: %v", err)
	}
	return &agentRun{t: t, cluster: cluster, a: a, stop: stop}
}

// scrape scrapes the agent's /metrics.
func (r *agentRun) scrape() scraped { return scrapeAgent(r.t, r.a.Addrs().Metrics) }

// waitMetric scrapes until cond holds on a scrape, for up to a minute, and
// returns that scrape.
func (r *agentRun) waitMetric(what string, conds ...cond) scraped {
	r.t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		s := r.scrape()
		failing := ""
		for _, c := range conds {
			if !c.ok(s) {
				failing = c.what
				break
			}
		}
		if failing == "" {
			return s
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("timed out waiting for %s: %s", what, failing)
		}
		time.Sleep(20 * time.Millisecond) // polling the scrape
	}
}

// cond is a condition on a scrape, with what it says for a failure.
type cond struct {
	what string
	ok   func(scraped) bool
}

// allExported returns a condition: every one of names is exported (some, such
// as the drivers' error counter, appear only once the first error came).
func allExported(names []string) cond {
	return cond{
		what: "every name of the rules and the dashboard exported",
		ok: func(s scraped) bool {
			for _, n := range names {
				if !s.has(n) {
					return false
				}
			}
			return true
		},
	}
}

// above returns a condition: the series of name matching match sum to more
// than min.
func above(name string, min float64, match ...string) cond {
	return cond{
		what: fmt.Sprintf("%s%v > %g", name, match, min),
		ok: func(s scraped) bool {
			v, ok := s.value(name, match...)
			return ok && v > min
		},
	}
}

// TestScrapedMetricsMove starts the agent, drives each failure it can from
// outside (the broker unreachable, the buffer full by size and by age, a
// PLC that does not answer, a record the broker refuses for good) and
// scrapes /metrics as Prometheus does: every series of the metrics contract
// and every name the alert rules and the dashboard use must be exported,
// and the series each scenario is about must move.
//
// With TestScrapedDamageMoves and TestScrapedDiskFull, every drop reason
// the buffer and ingest report is driven from outside (droveReasons, held
// to buffer.Reasons and ingest.DropReasons by TestEveryDropReasonDriven)
// but ingest's "stopped": samples a driver hands over after ingest has
// stopped. The agent stops its drivers before ingest, so only a driver
// that ignores being stopped produces them, and they are counted while
// the agent shuts down, after its last scrape, and not kept in the buffer
// file; agent/ingest's TestEmitAfterStopIsCounted drives it.
func TestScrapedMetricsMove(t *testing.T) {
	if testing.Short() {
		t.Skip("starts agents and brokers")
	}
	names := usedNames(t)
	tests := []struct {
		name   string
		buffer string                    // extra buffer settings
		before func(*kfakeproxy.Cluster) // before the agent starts
		during func(*kfakeproxy.Cluster) // once it sends
		want   []cond
		after  func(*kfakeproxy.Cluster) // then, with the wants below
		then   []cond
	}{
		{
			name: "healthy",
			want: []cond{
				above("kafka_messages_sent_total", 0, "sink", "kafka"),
				above("kafka_batches_sent_total", 0, "sink", "kafka"),
				above("kafka_send_duration_seconds", 0, "sink", "kafka"),
				above("iot_sample_delivery_seconds", 0, "sink", "kafka"),
				above("device_data_generated_total", 0, "source", "simulator:sim"),
				above("iot_ingest_samples_committed_total", 0),
				above("iot_buffer_commits_total", 0),
				above("iot_buffer_file_bytes", 0),
				above("iot_uplink_state", 0, "sink", "kafka", "state", "connected"),
			},
		},
		{
			name:   "broker unreachable, then back",
			during: func(c *kfakeproxy.Cluster) { c.Cut() },
			want: []cond{
				above("iot_uplink_state", 0, "sink", "kafka", "state", "backing_off"),
				above("kafka_send_errors_total", 0, "sink", "kafka"),
				above("iot_uplink_retries_total", 0, "sink", "kafka"),
				above("kafka_producer_buffer_depth", 1000, "sink", "kafka"),
				above("iot_buffer_bytes", 0, "queue", "kafka"),
				above("iot_buffer_oldest_age_seconds", 1, "queue", "kafka"),
			},
			after: func(c *kfakeproxy.Cluster) { c.Restore() },
			then: []cond{
				above("iot_uplink_state", 0, "sink", "kafka", "state", "connected"),
			},
		},
		{
			name:   "buffer full by size",
			buffer: ", max_bytes: 1MiB",
			before: func(c *kfakeproxy.Cluster) { c.Cut() },
			want: []cond{
				above("iot_buffer_dropped_records_total", 0, "queue", "kafka", "reason", "max_bytes"),
			},
		},
		{
			name:   "buffer full by age",
			buffer: ", max_age: 1s",
			before: func(c *kfakeproxy.Cluster) { c.Cut() },
			want: []cond{
				above("iot_buffer_dropped_records_total", 0, "queue", "kafka", "reason", "max_age"),
			},
		},
		{
			name: "PLC down",
			want: []cond{
				above("iot_driver_errors_total", 0, "source", "modbus:press"),
				above("device_data_generated_total", 0, "source", "modbus:press"),
			},
		},
		{
			name:   "record refused for good",
			before: func(c *kfakeproxy.Cluster) { kfakefault.RefuseRecord(c.Cluster, kerr.MessageTooLarge) },
			want: []cond{
				above("iot_dead_letter_records_total", 0, "sink", "kafka", "reason", "MESSAGE_TOO_LARGE"),
				above("iot_buffer_bytes", 0, "queue", "kafka.dead"),
				above("kafka_messages_sent_total", 0, "sink", "kafka"),
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := startScenarioAgent(t, tt.buffer, tt.before)
			if tt.during != nil {
				r.waitMetric("records sent", above("kafka_messages_sent_total", 0))
				tt.during(r.cluster)
			}
			r.waitMetric("the scenario's series to move", tt.want...)
			if tt.after != nil {
				tt.after(r.cluster)
				r.waitMetric("the series after the fault", tt.then...)
			}
			// Some names (the drivers' error counter) appear only with
			// their first event.
			s := r.waitMetric("every name exported", allExported(names))
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
