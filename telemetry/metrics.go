package telemetry

import (
	"runtime"
	"runtime/debug"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Label names used by the metrics.
const (
	// LabelSink is the sink a metric is about: "kafka" or "mqtt".
	LabelSink = "sink"
	// LabelSource is the driver that produced samples: "simulator" or a PLC name.
	LabelSource = "source"
	// LabelQueue is the buffer queue a metric is about.
	LabelQueue = "queue"
	// LabelReason says why something was dropped or dead-lettered.
	LabelReason = "reason"
	// LabelKind classifies a driver error (for example "timeout", "exception").
	LabelKind = "kind"
	// LabelState is an uplink state: see UplinkStates.
	LabelState = "state"
)

// Uplink states, the values of the state label of iot_uplink_state.
const (
	// UplinkConnected is 1 while the sink's broker is reachable.
	UplinkConnected = "connected"
	// UplinkBackingOff is 1 while the sink waits before retrying a failed send.
	UplinkBackingOff = "backing_off"
	// UplinkRefused is 1 while the broker refuses the sink's records for a
	// reason an operator must fix (authorisation, a policy): the sink
	// retries, but nothing gets through until the broker's side changes.
	UplinkRefused = "refused"
)

// UplinkStates lists every value of the state label of iot_uplink_state.
var UplinkStates = []string{UplinkConnected, UplinkBackingOff, UplinkRefused}

// sendDurationBuckets resolve the manual's SLOs: p99 around 30 ms and p95
// around 100 ms each fall on a bucket boundary.
var sendDurationBuckets = []float64{.001, .0025, .005, .01, .02, .03, .05, .075, .1, .15, .25, .5, 1, 2.5, 5, 10}

// deliveryBuckets go from milliseconds to a day: during a network outage
// samples wait in the buffer for hours before they are acknowledged.
var deliveryBuckets = []float64{
	.01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600,
	1800, 3600, 7200, 14400, 28800, 43200, 86400,
}

// commitDurationBuckets cover one group commit of the buffer: two fsyncs,
// a fraction of a millisecond on a good disk, seconds on a failing SD card.
var commitDurationBuckets = []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5}

// Metrics holds every metric of the agent, registered once in a private
// registry together with the process and Go runtime collectors. Create it
// with NewMetrics; each instance has its own registry, so several can live
// in one process (tests, a reload). All fields are safe for concurrent use
// and must not be reassigned.
type Metrics struct {
	reg *prometheus.Registry

	// MessagesSent is kafka_messages_sent_total{sink}: records acknowledged
	// by the broker.
	MessagesSent *prometheus.CounterVec
	// SendErrors is kafka_send_errors_total{sink}: records in produce
	// attempts that failed; a record that fails three attempts counts three.
	SendErrors *prometheus.CounterVec
	// BatchesSent is kafka_batches_sent_total{sink}: batches acknowledged.
	BatchesSent *prometheus.CounterVec
	// SendDuration is kafka_send_duration_seconds{sink}: time from a batch's
	// send to its acknowledgement (not the time it waited in the buffer).
	SendDuration *prometheus.HistogramVec
	// DataGenerated is device_data_generated_total{source}: samples produced
	// by a driver or the simulator. The label is the driver name, never a tag.
	DataGenerated *prometheus.CounterVec
	// SampleDelivery is iot_sample_delivery_seconds{sink}: time from a
	// sample's read to the broker's acknowledgement (end-to-end age).
	SampleDelivery *prometheus.HistogramVec

	// BufferCommits is iot_buffer_commits_total: group commits that succeeded.
	BufferCommits prometheus.Counter
	// BufferCommitErrors is iot_buffer_commit_errors_total: group commits
	// that failed.
	BufferCommitErrors prometheus.Counter
	// BufferCommitDuration is iot_buffer_commit_duration_seconds: duration of
	// one group commit, fsyncs included.
	BufferCommitDuration prometheus.Histogram
	// IngestCommitted is iot_ingest_samples_committed_total: samples written
	// to the buffer by the ingest stage.
	IngestCommitted prometheus.Counter
	// IngestDropped is iot_ingest_samples_dropped_total{reason}: samples the
	// ingest stage could not commit.
	IngestDropped *prometheus.CounterVec
	// IngestPending is iot_ingest_pending_samples: samples accepted from the
	// drivers and not yet committed.
	IngestPending prometheus.Gauge

	// UplinkRetries is iot_uplink_retries_total{sink}: batches sent again
	// after a failure.
	UplinkRetries *prometheus.CounterVec
	// DeadLetter is iot_dead_letter_records_total{sink,reason}: records moved
	// to the dead-letter queue because the broker refused them for good.
	DeadLetter *prometheus.CounterVec
	// DriverErrors is iot_driver_errors_total{source,kind}: failed reads,
	// connects or subscriptions of a driver.
	DriverErrors *prometheus.CounterVec
	// BuildInfo is iot_build_info{version,goversion}, always 1. Set it with
	// SetBuildInfo.
	BuildInfo *prometheus.GaugeVec
	// ComponentRestarts is iot_component_restarts_total{component}: a
	// driver, ingest or a send loop that stopped with an error or made no
	// progress while it had work, and was started again
	// ("source/modbus:press", "ingest", "sink/kafka").
	ComponentRestarts *prometheus.CounterVec

	// stats exports what is read from the components at scrape time:
	// kafka_producer_buffer_depth, iot_buffer_bytes,
	// iot_buffer_oldest_age_seconds, iot_buffer_file_bytes and
	// iot_uplink_state (see SetStatsSource).
	stats *statsCollector

	// sessions exports the sessions of OPC UA and other session-holding
	// drivers (see AddSessionSource).
	sessions *sessionCollector
}

// NewMetrics creates every metric in a new private registry, with the
// process and Go runtime collectors. iot_build_info starts with the main
// module's version from the build information; call SetBuildInfo to
// replace it.
func NewMetrics() *Metrics {
	sinkLabel := []string{LabelSink}
	m := &Metrics{
		reg:   prometheus.NewRegistry(),
		stats: newStatsCollector(),

		MessagesSent: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kafka_messages_sent_total",
			Help: "Records acknowledged by the broker.",
		}, sinkLabel),
		SendErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kafka_send_errors_total",
			Help: "Records in produce attempts that failed; each failed attempt counts.",
		}, sinkLabel),
		BatchesSent: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kafka_batches_sent_total",
			Help: "Batches acknowledged by the broker.",
		}, sinkLabel),
		SendDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "kafka_send_duration_seconds",
			Help:    "Time from a batch's send to its acknowledgement.",
			Buckets: sendDurationBuckets,
		}, sinkLabel),
		DataGenerated: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "device_data_generated_total",
			Help: "Samples produced by drivers and the simulator.",
		}, []string{LabelSource}),
		SampleDelivery: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "iot_sample_delivery_seconds",
			Help:    "Time from a sample's read to its acknowledgement by the broker.",
			Buckets: deliveryBuckets,
		}, sinkLabel),

		BufferCommits: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "iot_buffer_commits_total",
			Help: "Buffer group commits that succeeded.",
		}),
		BufferCommitErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "iot_buffer_commit_errors_total",
			Help: "Buffer group commits that failed.",
		}),
		BufferCommitDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "iot_buffer_commit_duration_seconds",
			Help:    "Duration of one buffer group commit, fsyncs included.",
			Buckets: commitDurationBuckets,
		}),
		IngestCommitted: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "iot_ingest_samples_committed_total",
			Help: "Samples committed to the buffer by the ingest stage.",
		}),
		IngestDropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "iot_ingest_samples_dropped_total",
			Help: "Samples the ingest stage could not commit.",
		}, []string{LabelReason}),
		IngestPending: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "iot_ingest_pending_samples",
			Help: "Samples accepted from the drivers and not yet committed.",
		}),

		UplinkRetries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "iot_uplink_retries_total",
			Help: "Batches sent again after a failure.",
		}, sinkLabel),
		DeadLetter: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "iot_dead_letter_records_total",
			Help: "Records moved to the dead-letter queue.",
		}, []string{LabelSink, LabelReason}),
		DriverErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "iot_driver_errors_total",
			Help: "Failed reads, connects or subscriptions of a driver.",
		}, []string{LabelSource, LabelKind}),
		ComponentRestarts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "iot_component_restarts_total",
			Help: "Drivers, ingest and send loops that stopped with an error or made no progress while they had work, and were started again.",
		}, []string{"component"}),
		BuildInfo: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "iot_build_info",
			Help: "Always 1; the labels say which build is running.",
		}, []string{"version", "goversion"}),
	}

	// MustRegister panics only on a duplicate or inconsistent name in the
	// list below, a programming error that every test run would show.
	m.sessions = newSessionCollector()
	m.reg.MustRegister(
		m.sessions,
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		collectors.NewGoCollector(),
		m.MessagesSent, m.SendErrors, m.BatchesSent, m.SendDuration,
		m.DataGenerated, m.SampleDelivery,
		m.BufferCommits, m.BufferCommitErrors, m.BufferCommitDuration,
		m.IngestCommitted, m.IngestDropped, m.IngestPending,
		m.UplinkRetries, m.DeadLetter, m.DriverErrors,
		m.BuildInfo, m.ComponentRestarts, m.stats,
	)
	m.SetBuildInfo(moduleVersion())
	return m
}

// Registry returns the private registry holding every metric of m, for
// promhttp or for a test's Gather.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// InitSink creates the counters and histograms of a sink (kafka_*,
// iot_sample_delivery_seconds, iot_uplink_retries_total) at zero, so that
// they are exported before the first send. Call it once per configured
// sink. The sink's queue depth and state come from SetStatsSource.
func (m *Metrics) InitSink(name string) {
	m.MessagesSent.WithLabelValues(name)
	m.SendErrors.WithLabelValues(name)
	m.BatchesSent.WithLabelValues(name)
	m.SendDuration.WithLabelValues(name)
	m.SampleDelivery.WithLabelValues(name)
	m.UplinkRetries.WithLabelValues(name)
}

// InitSource creates device_data_generated_total for a driver at zero. Call
// it once per configured driver (the simulator counts as one).
func (m *Metrics) InitSource(name string) {
	m.DataGenerated.WithLabelValues(name)
}

// SetBuildInfo replaces the single iot_build_info series with one for
// version and the Go version this binary was built with.
func (m *Metrics) SetBuildInfo(version string) {
	if version == "" {
		version = "unknown"
	}
	m.BuildInfo.Reset()
	m.BuildInfo.WithLabelValues(version, runtime.Version()).Set(1)
}

// moduleVersion is the main module's version recorded by the Go toolchain,
// "(devel)" for a local build, or "unknown" without build information.
func moduleVersion() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok || bi.Main.Version == "" {
		return "unknown"
	}
	return bi.Main.Version
}
