package telemetry

import (
	"sort"

	"github.com/prometheus/client_golang/prometheus"
)

// BufferSnapshot is what the buffer collector reads from the buffer at
// each scrape.
type BufferSnapshot struct {
	// Dropped counts the records each queue dropped, by reason, since the
	// buffer file was created (the counts are kept in the file).
	Dropped map[string]map[string]uint64
	// SalvagedRecords and SalvageLostRecords count the records recovered
	// from a damaged buffer file when it was opened, and those known lost.
	SalvagedRecords, SalvageLostRecords uint64
	// SalvageLostSeries and SalvageLostSeqs count the series with
	// sequence ranges known lost in a damaged buffer file, and the
	// numbers in those ranges.
	SalvageLostSeries, SalvageLostSeqs uint64
	// StateLost is set when the sequence state could not be carried over
	// when the buffer was opened (a new epoch started).
	StateLost bool
}

var (
	bufferDroppedDesc = prometheus.NewDesc("iot_buffer_dropped_records_total",
		"Records discarded by the buffer.", []string{LabelQueue, LabelReason}, nil)
	bufferSalvagedDesc = prometheus.NewDesc("iot_buffer_salvaged_records_total",
		"Records recovered from a damaged buffer file by scanning it for intact frames.", nil, nil)
	bufferLostDesc = prometheus.NewDesc("iot_buffer_salvage_lost_records_total",
		"Records known lost in a damaged buffer file (frames whose header survived and whose records did not).", nil, nil)
	bufferLostSeriesDesc = prometheus.NewDesc("iot_buffer_salvage_lost_series",
		"Series with sequence ranges known lost in a damaged buffer file (the ranges are in the log and /ready).", nil, nil)
	bufferLostSeqsDesc = prometheus.NewDesc("iot_buffer_salvage_lost_sequence_numbers_total",
		"Sequence numbers in the ranges known lost in a damaged buffer file, over all series.", nil, nil)
	bufferStateLostDesc = prometheus.NewDesc("iot_buffer_sequence_state_lost",
		"1 when the sequence state could not be carried over at start (a new stream epoch started), 0 otherwise.", nil, nil)
)

// bufferCollector exports the buffer's drop and salvage counts, read when
// Prometheus scrapes.
type bufferCollector struct{ read func() BufferSnapshot }

// NewBufferCollector returns a collector that calls read at each scrape and
// exports iot_buffer_dropped_records_total{queue,reason},
// iot_buffer_salvaged_records_total, iot_buffer_salvage_lost_records_total,
// iot_buffer_salvage_lost_series,
// iot_buffer_salvage_lost_sequence_numbers_total and
// iot_buffer_sequence_state_lost. Register it with the agent's
// registry (Metrics.Registry) once the buffer is open. It describes
// nothing (an unchecked collector); it is the only source of
// iot_buffer_dropped_records_total.
func NewBufferCollector(read func() BufferSnapshot) prometheus.Collector {
	return bufferCollector{read: read}
}

// Describe implements prometheus.Collector: nothing (unchecked).
func (bufferCollector) Describe(chan<- *prometheus.Desc) {}

// Collect implements prometheus.Collector.
func (c bufferCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.read()
	queues := make([]string, 0, len(s.Dropped))
	for q := range s.Dropped {
		queues = append(queues, q)
	}
	sort.Strings(queues)
	for _, q := range queues {
		for reason, n := range s.Dropped[q] {
			ch <- prometheus.MustNewConstMetric(bufferDroppedDesc, prometheus.CounterValue, float64(n), q, reason)
		}
	}
	ch <- prometheus.MustNewConstMetric(bufferSalvagedDesc, prometheus.CounterValue, float64(s.SalvagedRecords))
	ch <- prometheus.MustNewConstMetric(bufferLostDesc, prometheus.CounterValue, float64(s.SalvageLostRecords))
	ch <- prometheus.MustNewConstMetric(bufferLostSeriesDesc, prometheus.GaugeValue, float64(s.SalvageLostSeries))
	ch <- prometheus.MustNewConstMetric(bufferLostSeqsDesc, prometheus.CounterValue, float64(s.SalvageLostSeqs))
	lost := 0.0
	if s.StateLost {
		lost = 1
	}
	ch <- prometheus.MustNewConstMetric(bufferStateLostDesc, prometheus.GaugeValue, lost)
}
