package agent

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/iot-producer/iot-producer/agent/config"
	"github.com/iot-producer/iot-producer/agent/ingest"
	"github.com/iot-producer/iot-producer/buffer"
	"github.com/iot-producer/iot-producer/drivers"
	"github.com/iot-producer/iot-producer/drivers/modbus"
	"github.com/iot-producer/iot-producer/record"
	"github.com/iot-producer/iot-producer/simulator"
	"github.com/iot-producer/iot-producer/telemetry"
	"github.com/iot-producer/iot-producer/uplink"
	"github.com/iot-producer/iot-producer/uplink/kafka"
)

// buildSources returns the simulator source and one driver per enabled PLC;
// drivers count their errors in m.
func buildSources(cfg *config.Config, m *telemetry.Metrics, log *slog.Logger) ([]drivers.Driver, error) {
	var out []drivers.Driver
	if cfg.Device.Enabled != nil && *cfg.Device.Enabled && cfg.Device.Count > 0 {
		src, err := simulator.NewSource(simulator.SourceOptions{
			Devices:       cfg.Device.Count,
			TagsPerDevice: cfg.Device.TagsPerDevice,
			Interval:      cfg.Device.SampleInterval.Std(),
			Variation:     cfg.Device.DataVariation,
			Seed:          cfg.Device.Seed,
			NamePrefix:    cfg.Device.NamePrefix,
		})
		if err != nil {
			return nil, fmt.Errorf("device: %w", err)
		}
		out = append(out, src)
	}
	// One pool for every Modbus PLC: devices behind one host:port or
	// serial port share its connection. It closes each connection when
	// the last driver using it stops.
	pool := modbus.NewPool(modbus.PoolOptions{Logger: log.With("component", "modbus")})
	for i, plc := range cfg.PLCs {
		if plc.Enabled != nil && !*plc.Enabled {
			continue
		}
		if plc.Driver != "modbus" {
			return nil, fmt.Errorf("plcs[%d] (%s): driver %q is not available in this build yet", i, plc.Name, plc.Driver)
		}
		d, err := modbusDriver(i, plc, pool, m, log)
		if err != nil {
			return nil, err
		}
		out = append(out, d)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no source: enable device or configure plcs")
	}
	return out, nil
}

// buildSinks returns the configured sinks, without their queues.
func (a *Agent) buildSinks() ([]*sinkRunner, error) {
	cfg := a.cfg
	var out []*sinkRunner
	if cfg.Producer.Enabled == nil || *cfg.Producer.Enabled {
		opts, err := kafkaOptions(cfg)
		if err != nil {
			return nil, fmt.Errorf("producer: %w", err)
		}
		opts.Logger = a.log.With("sink", "kafka")
		opts.OnConnect = func(broker string) { a.log.Debug("kafka broker connected", "broker", broker) }
		k, err := kafka.New(opts)
		if err != nil {
			return nil, fmt.Errorf("producer: %w", err)
		}
		out = append(out, &sinkRunner{name: k.Name(), close: k.Close, sink: k})
	}
	if cfg.MQTT.Enabled {
		for _, s := range out {
			s.close()
		}
		return nil, fmt.Errorf("mqtt: the MQTT sink is not available in this build yet")
	}
	for _, s := range out {
		a.metrics.InitSink(s.name)
		a.metrics.InitQueue(s.name)
	}
	return out, nil
}

func kafkaOptions(cfg *config.Config) (kafka.Options, error) {
	p := cfg.Producer
	tlsCfg, err := uplink.TLSConfig(uplink.TLSFiles{
		Enabled: p.TLS.Enabled, CAFile: p.TLS.CAFile, CertFile: p.TLS.CertFile, KeyFile: p.TLS.KeyFile,
		ServerName: p.TLS.ServerName, InsecureSkipVerify: p.TLS.InsecureSkipVerify,
	})
	if err != nil {
		return kafka.Options{}, fmt.Errorf("tls: %w", err)
	}
	mech, err := kafka.SASLMechanism(p.SASL.Mechanism, p.SASL.Username, p.SASL.Password)
	if err != nil {
		return kafka.Options{}, fmt.Errorf("sasl: %w", err)
	}
	return kafka.Options{
		Brokers:            p.Brokers,
		Topic:              p.Topic,
		ClientID:           p.ClientID,
		GatewayID:          cfg.Gateway.ID,
		Compression:        p.Compression,
		Acks:               p.Acks,
		Idempotent:         p.Idempotent == nil || *p.Idempotent,
		TLS:                tlsCfg,
		SASL:               mech,
		MaxBufferedRecords: 2 * p.BatchSize * p.WorkerCount,
		DeliveryTimeout:    p.DeliveryTimeout.Std(),
	}, nil
}

func (a *Agent) openBuffer(queues []string) (*buffer.Buffer, error) {
	b := a.cfg.Buffer
	drop, err := buffer.ParseDropPolicy(b.DropPolicy)
	if err != nil {
		return nil, fmt.Errorf("buffer.drop_policy: %w", err)
	}
	onCorrupt, err := buffer.ParseCorruptPolicy(b.OnCorrupt)
	if err != nil {
		return nil, fmt.Errorf("buffer.on_corrupt: %w", err)
	}
	all := append(queues[:len(queues):len(queues)], deadLetterQueues(queues)...)
	if err := buffer.CheckBounds(int64(b.MaxBytes), len(all)); err != nil {
		return nil, fmt.Errorf("buffer.max_bytes: %w", err)
	}
	// The state directory may not exist yet on a hand-run gateway (the
	// package and the unit create it): make it, private to the agent.
	if err := os.MkdirAll(filepath.Dir(b.Path), 0o750); err != nil {
		return nil, fmt.Errorf("buffer: state directory: %w", err)
	}
	buf, err := buffer.Open(b.Path, buffer.Options{
		Queues:           queues,
		DeadLetterQueues: deadLetterQueues(queues),
		MaxBytes:         int64(b.MaxBytes),
		MaxAge:           b.MaxAge.Std(),
		DropPolicy:       drop,
		OnCorrupt:        onCorrupt,
		Logger:           a.log.With("component", "buffer"),
	})
	if err != nil {
		return nil, fmt.Errorf("buffer: %w", err)
	}
	return buf, nil
}

// deadLetterQueue names the queue holding what a sink's broker refused for
// good.
func deadLetterQueue(sink string) string { return sink + ".dead" }

func deadLetterQueues(sinks []string) []string {
	out := make([]string, len(sinks))
	for i, s := range sinks {
		out[i] = deadLetterQueue(s)
	}
	return out
}

// deadLetters keeps a sink's refused records in its dead-letter queue,
// with the reason and the time (`iot-producer buffer export --queue
// kafka.dead` shows them).
type deadLetters struct {
	buf   *buffer.Buffer
	queue string
}

// Put implements uplink.DeadLetters.
func (d deadLetters) Put(records [][]byte, reason string) error {
	now := time.Now()
	wrapped := make([][]byte, len(records))
	for i, r := range records {
		wrapped[i] = record.AppendDeadLetter(nil, reason, now, r)
	}
	return d.buf.AppendTo(d.queue, wrapped)
}

func (a *Agent) newIngest() (*ingest.Ingest, error) {
	m := a.metrics
	return ingest.New(a.buf, ingest.Options{
		GatewayID:      a.cfg.Gateway.ID,
		CommitInterval: a.cfg.Buffer.CommitInterval.Std(),
		CommitSize:     a.cfg.Buffer.CommitSize,
		Logger:         a.log,
		Metrics: ingest.Metrics{
			Committed: func(n int) { m.IngestCommitted.Add(float64(n)); m.BufferCommits.Inc() },
			Dropped:   func(reason string, n int) { m.IngestDropped.WithLabelValues(reason).Add(float64(n)) },
			Pending:   func(n int) { m.IngestPending.Set(float64(n)) },
			CommitFailed: func() {
				m.BufferCommitErrors.Inc()
				a.health.Set("ingest", telemetry.StateDegraded, "buffer commits failing; samples held in memory")
			},
			CommitTime: func(d time.Duration) { m.BufferCommitDuration.Observe(d.Seconds()) },
		},
	})
}

func (a *Agent) newLoop(s *sinkRunner) *uplink.Loop {
	m := a.metrics
	name := s.name
	sent := m.MessagesSent.WithLabelValues(name)
	batches := m.BatchesSent.WithLabelValues(name)
	sendDur := m.SendDuration.WithLabelValues(name)
	delivery := m.SampleDelivery.WithLabelValues(name)
	errs := m.SendErrors.WithLabelValues(name)
	retries := m.UplinkRetries.WithLabelValues(name)
	p := a.cfg.Producer
	states := newLaneStates(name, a.health, m)
	return uplink.New(s.queue, s.sink, uplink.Options{
		BatchSize:     p.BatchSize,
		FlushInterval: p.FlushInterval.Std(),
		Workers:       p.WorkerCount,
		LiveWindow:    p.LiveWindow.Std(),
		DeadLetters:   deadLetters{buf: a.buf, queue: deadLetterQueue(name)},
		Logger:        a.log,
		Metrics: uplink.Metrics{
			Sent: func(_ uplink.Lane, n int, d time.Duration, readTimes []time.Time) {
				sent.Add(float64(n))
				batches.Inc()
				sendDur.Observe(d.Seconds())
				now := time.Now()
				for _, t := range readTimes {
					delivery.Observe(now.Sub(t).Seconds())
				}
			},
			Failed:       func(n int) { errs.Add(float64(n)) },
			Retried:      retries.Inc,
			DeadLettered: func(reason string, n int) { m.DeadLetter.WithLabelValues(name, reason).Add(float64(n)) },
		},
		OnState: states.set,
	})
}

// laneStates folds the two lanes' states of one sink into its /ready entry
// and iot_uplink_state: degraded (still ready) while either lane backs off.
type laneStates struct {
	name    string
	health  *telemetry.Health
	metrics *telemetry.Metrics

	mu    sync.Mutex
	state [2]uplink.State
	err   [2]error
	since [2]time.Time
}

func newLaneStates(name string, h *telemetry.Health, m *telemetry.Metrics) *laneStates {
	return &laneStates{name: name, health: h, metrics: m, state: [2]uplink.State{uplink.StateConnected, uplink.StateConnected}}
}

func (ls *laneStates) set(lane uplink.Lane, st uplink.State, err error) {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	if ls.state[lane] != st {
		ls.since[lane] = time.Now()
	}
	ls.state[lane], ls.err[lane] = st, err
	var problems []string
	for _, l := range []uplink.Lane{uplink.Live, uplink.Backlog} {
		if ls.state[l] == uplink.StateBackingOff {
			problems = append(problems, fmt.Sprintf("%s lane backing off since %s: %v", l, ls.since[l].UTC().Format(time.RFC3339), ls.err[l]))
		}
	}
	if len(problems) == 0 {
		ls.metrics.SetUplinkState(ls.name, string(uplink.StateConnected))
		ls.health.Set("sink/"+ls.name, telemetry.StateOK, "sending")
		return
	}
	ls.metrics.SetUplinkState(ls.name, string(uplink.StateBackingOff))
	ls.health.Set("sink/"+ls.name, telemetry.StateDegraded, strings.Join(problems, "; "))
}
