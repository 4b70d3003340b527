package telemetry

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Stats is the state that lives in the pipeline's components (the buffer
// file and its queues, each sink's connection state), read from them when
// Prometheus scrapes. Because these series are made from the components at
// every scrape, a declared metric cannot stay empty or stale because some
// loop forgot to set it.
type Stats struct {
	// BufferFileBytes is the size of the buffer file on disk.
	BufferFileBytes int64
	// Queues holds one entry per buffer queue (sink queues and their
	// dead-letter queues).
	Queues []QueueStats
	// Sinks holds one entry per configured sink.
	Sinks []SinkStats
}

// QueueStats is one buffer queue as the collector exports it.
type QueueStats struct {
	// Queue is the queue's name, the value of the queue label.
	Queue string
	// Sink is the sink that sends from this queue; empty for a queue no
	// sink sends from (a dead-letter queue). Only a sink's queue is
	// exported as kafka_producer_buffer_depth.
	Sink string
	// Records and Bytes are what the queue holds.
	Records, Bytes int64
	// Oldest is the append time of the oldest record; zero when empty.
	Oldest time.Time
}

// SinkStats is one sink's connection state.
type SinkStats struct {
	// Sink is the sink's name, the value of the sink label.
	Sink string
	// State is one of UplinkStates.
	State string
}

// statsCollector exports Stats read at scrape time from the function set by
// Metrics.SetStatsSource.
type statsCollector struct {
	mu  sync.Mutex
	src func() Stats
	// now is the clock for ages; time.Now unless a test sets it.
	now func() time.Time

	depth, bytes, age, fileBytes, state *prometheus.Desc
}

func newStatsCollector() *statsCollector {
	return &statsCollector{
		now: time.Now,
		depth: prometheus.NewDesc("kafka_producer_buffer_depth",
			"Records waiting in the sink's queue on disk.", []string{LabelSink}, nil),
		bytes: prometheus.NewDesc("iot_buffer_bytes",
			"Bytes of records held in a buffer queue.", []string{LabelQueue}, nil),
		age: prometheus.NewDesc("iot_buffer_oldest_age_seconds",
			"Age of the oldest record in a buffer queue; 0 when empty.", []string{LabelQueue}, nil),
		fileBytes: prometheus.NewDesc("iot_buffer_file_bytes",
			"Size of the buffer file on disk.", nil, nil),
		state: prometheus.NewDesc("iot_uplink_state",
			"1 for the state a sink is in (connected, backing_off, refused), 0 for the others.", []string{LabelSink, LabelState}, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *statsCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.depth, c.bytes, c.age, c.fileBytes, c.state} {
		ch <- d
	}
}

// Collect implements prometheus.Collector: it reads the source once and
// exports what it says. Without a source it exports nothing.
func (c *statsCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	src, now := c.src, c.now
	c.mu.Unlock()
	if src == nil {
		return
	}
	st := src()
	ch <- prometheus.MustNewConstMetric(c.fileBytes, prometheus.GaugeValue, float64(st.BufferFileBytes))
	t := now()
	for _, q := range st.Queues {
		if q.Sink != "" {
			ch <- prometheus.MustNewConstMetric(c.depth, prometheus.GaugeValue, float64(q.Records), q.Sink)
		}
		ch <- prometheus.MustNewConstMetric(c.bytes, prometheus.GaugeValue, float64(q.Bytes), q.Queue)
		age := 0.0
		if !q.Oldest.IsZero() && q.Records > 0 {
			age = max(0, t.Sub(q.Oldest).Seconds())
		}
		ch <- prometheus.MustNewConstMetric(c.age, prometheus.GaugeValue, age, q.Queue)
	}
	for _, s := range st.Sinks {
		for _, state := range UplinkStates {
			v := 0.0
			if state == s.State {
				v = 1
			}
			ch <- prometheus.MustNewConstMetric(c.state, prometheus.GaugeValue, v, s.Sink, state)
		}
	}
}

// SetStatsSource sets the function the collector calls at every scrape to
// read the buffer's and the sinks' state (kafka_producer_buffer_depth,
// iot_buffer_bytes, iot_buffer_oldest_age_seconds, iot_buffer_file_bytes,
// iot_uplink_state). The buffer's drop and salvage counts come from
// NewBufferCollector. It must be safe to call from any goroutine and should
// not block; nil stops exporting those series.
func (m *Metrics) SetStatsSource(src func() Stats) {
	m.stats.mu.Lock()
	defer m.stats.mu.Unlock()
	m.stats.src = src
}
