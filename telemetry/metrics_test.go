package telemetry

import (
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// scrape returns m's registry in the Prometheus text format, as /metrics
// would serve it.
func scrape(t *testing.T, m *Metrics) string {
	t.Helper()
	rec := httptest.NewRecorder()
	promhttp.HandlerFor(m.Registry(), promhttp.HandlerOpts{}).
		ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("scrape: status %d, body %s", rec.Code, rec.Body)
	}
	return rec.Body.String()
}

// assertLines fails for each line of want that is not a whole line of text.
func assertLines(t *testing.T, text string, want ...string) {
	t.Helper()
	lines := make(map[string]bool)
	for l := range strings.SplitSeq(text, "\n") {
		lines[l] = true
	}
	for _, w := range want {
		if !lines[w] {
			t.Errorf("missing line %q", w)
		}
	}
}

// contractNames are the metric names the operations manual relies on.
var contractNames = []string{
	"kafka_messages_sent_total",
	"kafka_send_errors_total",
	"kafka_batches_sent_total",
	"kafka_send_duration_seconds",
	"kafka_producer_buffer_depth",
	"device_data_generated_total",
	"iot_sample_delivery_seconds",
}

func TestContractSeriesExistAtZeroAfterInit(t *testing.T) {
	m := NewMetrics()
	m.InitSink("kafka")
	m.InitSink("mqtt")
	m.InitSource("simulator")
	m.SetStatsSource(func() Stats {
		return Stats{
			Queues: []QueueStats{{Queue: "kafka", Sink: "kafka"}},
			Sinks:  []SinkStats{{Sink: "kafka", State: UplinkConnected}},
		}
	})
	text := scrape(t, m)

	for _, name := range contractNames {
		if !strings.Contains(text, "# TYPE "+name+" ") {
			t.Errorf("%s not exported before any observation", name)
		}
	}
	assertLines(t, text,
		`kafka_messages_sent_total{sink="kafka"} 0`,
		`kafka_messages_sent_total{sink="mqtt"} 0`,
		`kafka_send_errors_total{sink="kafka"} 0`,
		`kafka_batches_sent_total{sink="kafka"} 0`,
		`kafka_send_duration_seconds_count{sink="kafka"} 0`,
		`kafka_producer_buffer_depth{sink="kafka"} 0`,
		`device_data_generated_total{source="simulator"} 0`,
		`iot_sample_delivery_seconds_count{sink="mqtt"} 0`,
		`iot_uplink_state{sink="kafka",state="connected"} 1`,
		`iot_uplink_state{sink="kafka",state="backing_off"} 0`,
		`iot_uplink_state{sink="kafka",state="refused"} 0`,
		`iot_uplink_retries_total{sink="kafka"} 0`,
		`iot_buffer_bytes{queue="kafka"} 0`,
		`iot_buffer_oldest_age_seconds{queue="kafka"} 0`,
		`iot_buffer_file_bytes 0`,
	)
}

func TestEveryMetricIsRegisteredUnderItsName(t *testing.T) {
	m := NewMetrics()
	var st Stats
	m.SetStatsSource(func() Stats { return st })
	now := time.Date(2026, 11, 26, 8, 0, 0, 0, time.UTC)
	m.stats.now = func() time.Time { return now }
	tests := []struct {
		name string
		use  func()
		line string // a sample line expected after use
	}{
		{"kafka_messages_sent_total", func() { m.MessagesSent.WithLabelValues("kafka").Add(3) }, `kafka_messages_sent_total{sink="kafka"} 3`},
		{"kafka_send_errors_total", func() { m.SendErrors.WithLabelValues("mqtt").Add(2) }, `kafka_send_errors_total{sink="mqtt"} 2`},
		{"kafka_batches_sent_total", func() { m.BatchesSent.WithLabelValues("kafka").Inc() }, `kafka_batches_sent_total{sink="kafka"} 1`},
		{"kafka_send_duration_seconds", func() { m.SendDuration.WithLabelValues("kafka").Observe(0.025) }, `kafka_send_duration_seconds_bucket{sink="kafka",le="0.03"} 1`},
		{"kafka_producer_buffer_depth", func() { st.Queues = append(st.Queues, QueueStats{Queue: "kafka", Sink: "kafka", Records: 42}) }, `kafka_producer_buffer_depth{sink="kafka"} 42`},
		{"device_data_generated_total", func() { m.DataGenerated.WithLabelValues("plc1").Add(5) }, `device_data_generated_total{source="plc1"} 5`},
		{"iot_sample_delivery_seconds", func() { m.SampleDelivery.WithLabelValues("kafka").Observe(7200) }, `iot_sample_delivery_seconds_bucket{sink="kafka",le="7200"} 1`},
		{"iot_buffer_bytes", func() { st.Queues = append(st.Queues, QueueStats{Queue: "kafka.dead", Bytes: 1024}) }, `iot_buffer_bytes{queue="kafka.dead"} 1024`},
		{"iot_buffer_oldest_age_seconds", func() {
			st.Queues = append(st.Queues, QueueStats{Queue: "mqtt", Records: 1, Oldest: now.Add(-time.Hour)})
		}, `iot_buffer_oldest_age_seconds{queue="mqtt"} 3600`},
		{"iot_buffer_commits_total", func() { m.BufferCommits.Inc() }, `iot_buffer_commits_total 1`},
		{"iot_buffer_commit_errors_total", func() { m.BufferCommitErrors.Inc() }, `iot_buffer_commit_errors_total 1`},
		{"iot_buffer_commit_duration_seconds", func() { m.BufferCommitDuration.Observe(0.0002) }, `iot_buffer_commit_duration_seconds_bucket{le="0.00025"} 1`},
		{"iot_buffer_file_bytes", func() { st.BufferFileBytes = 65536 }, `iot_buffer_file_bytes 65536`},
		{"iot_ingest_samples_committed_total", func() { m.IngestCommitted.Add(10) }, `iot_ingest_samples_committed_total 10`},
		{"iot_ingest_samples_dropped_total", func() { m.IngestDropped.WithLabelValues("closed").Inc() }, `iot_ingest_samples_dropped_total{reason="closed"} 1`},
		{"iot_ingest_pending_samples", func() { m.IngestPending.Set(7) }, `iot_ingest_pending_samples 7`},
		{"iot_uplink_state", func() { st.Sinks = append(st.Sinks, SinkStats{Sink: "kafka", State: UplinkRefused}) }, `iot_uplink_state{sink="kafka",state="refused"} 1`},
		{"iot_uplink_retries_total", func() { m.UplinkRetries.WithLabelValues("kafka").Inc() }, `iot_uplink_retries_total{sink="kafka"} 1`},
		{"iot_dead_letter_records_total", func() { m.DeadLetter.WithLabelValues("kafka", "too_large").Inc() }, `iot_dead_letter_records_total{reason="too_large",sink="kafka"} 1`},
		{"iot_driver_errors_total", func() { m.DriverErrors.WithLabelValues("plc1", "timeout").Inc() }, `iot_driver_errors_total{kind="timeout",source="plc1"} 1`},
		{"iot_build_info", func() { m.SetBuildInfo("v1.2.3") }, `iot_build_info{goversion="` + runtime.Version() + `",version="v1.2.3"} 1`},
	}
	for _, tt := range tests {
		tt.use()
	}
	text := scrape(t, m)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if !strings.Contains(text, "# TYPE "+tt.name+" ") {
				t.Errorf("%s not exported", tt.name)
			}
			assertLines(t, text, tt.line)
		})
	}
}

func TestRuntimeCollectorsAreRegistered(t *testing.T) {
	text := scrape(t, NewMetrics())
	// The manual greps go_gc and divides process_cpu_seconds_total.
	for _, name := range []string{"go_gc_duration_seconds", "go_goroutines", "process_cpu_seconds_total", "process_resident_memory_bytes"} {
		if !strings.Contains(text, "# TYPE "+name+" ") {
			t.Errorf("%s not exported", name)
		}
	}
}

func TestInstancesDoNotShareARegistry(t *testing.T) {
	a, b := NewMetrics(), NewMetrics() // would panic on a shared registry
	if a.Registry() == b.Registry() {
		t.Fatal("two Metrics share one registry")
	}
	a.MessagesSent.WithLabelValues("kafka").Add(5)
	b.MessagesSent.WithLabelValues("kafka").Add(1)
	assertLines(t, scrape(t, a), `kafka_messages_sent_total{sink="kafka"} 5`)
	assertLines(t, scrape(t, b), `kafka_messages_sent_total{sink="kafka"} 1`)
}

func TestHistogramBucketsResolveTheSLOs(t *testing.T) {
	m := NewMetrics()
	m.InitSink("kafka")
	text := scrape(t, m)
	tests := []struct {
		metric string
		le     string
	}{
		{"kafka_send_duration_seconds", "0.03"}, // p99 target
		{"kafka_send_duration_seconds", "0.1"},  // p95 alert threshold
		{"iot_sample_delivery_seconds", "3600"}, // an hour-long outage
		{"iot_sample_delivery_seconds", "86400"},
	}
	for _, tt := range tests {
		t.Run(tt.metric+"/"+tt.le, func(t *testing.T) {
			assertLines(t, text, tt.metric+`_bucket{sink="kafka",le="`+tt.le+`"} 0`)
		})
	}
}

func TestSetBuildInfoKeepsOneSeries(t *testing.T) {
	m := NewMetrics()
	m.SetBuildInfo("v1")
	m.SetBuildInfo("v2")
	text := scrape(t, m)
	if n := strings.Count(text, "\niot_build_info{"); n != 1 {
		t.Errorf("iot_build_info has %d series, want 1:\n%s", n, text)
	}
	assertLines(t, text, `iot_build_info{goversion="`+runtime.Version()+`",version="v2"} 1`)
}

// TestStatsAreReadAtEveryScrape: what the collector exports follows its
// source from one scrape to the next, with nothing to set in between.
func TestStatsAreReadAtEveryScrape(t *testing.T) {
	m := NewMetrics()
	if text := scrape(t, m); strings.Contains(text, "iot_buffer_file_bytes") {
		t.Fatalf("exported buffer stats without a source:\n%s", text)
	}
	st := Stats{
		BufferFileBytes: 4096,
		Queues:          []QueueStats{{Queue: "kafka", Sink: "kafka", Records: 3, Bytes: 300}},
		Sinks:           []SinkStats{{Sink: "kafka", State: UplinkConnected}},
	}
	var mu sync.Mutex
	m.SetStatsSource(func() Stats {
		mu.Lock()
		defer mu.Unlock()
		return st
	})
	tests := []struct {
		name   string
		change func(*Stats)
		lines  []string
	}{
		{"healthy", func(*Stats) {}, []string{
			`kafka_producer_buffer_depth{sink="kafka"} 3`,
			`iot_buffer_file_bytes 4096`,
			`iot_uplink_state{sink="kafka",state="connected"} 1`,
			`iot_uplink_state{sink="kafka",state="backing_off"} 0`,
		}},
		{"full and cut off", func(s *Stats) {
			s.BufferFileBytes = 1 << 20
			s.Queues[0].Records = 5000
			s.Sinks[0].State = UplinkBackingOff
		}, []string{
			`kafka_producer_buffer_depth{sink="kafka"} 5000`,
			`iot_buffer_file_bytes 1.048576e+06`,
			`iot_uplink_state{sink="kafka",state="connected"} 0`,
			`iot_uplink_state{sink="kafka",state="backing_off"} 1`,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mu.Lock()
			tt.change(&st)
			mu.Unlock()
			assertLines(t, scrape(t, m), tt.lines...)
		})
	}
}
