// Package kafka is the Apache Kafka sink, built on franz-go. It turns
// messages into Kafka records (key = device, headers with the gateway id,
// schema version and lane) and reports when the broker has acknowledged
// them. It knows nothing of the buffer or of PLCs.
package kafka

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl"

	"github.com/iot-producer/iot-producer/record"
	"github.com/iot-producer/iot-producer/uplink"
)

// Options configures a Sink.
type Options struct {
	Brokers []string
	// Topic is a fixed topic or a template with {device} and {gateway}.
	Topic     string
	ClientID  string
	GatewayID string
	// Compression is none, gzip, snappy, lz4 or zstd.
	Compression string
	// Acks is all, leader or none.
	Acks       string
	Idempotent bool
	TLS        *tls.Config
	SASL       sasl.Mechanism
	// MaxBufferedRecords bounds records handed to franz-go and not yet
	// acknowledged; it must exceed batch size × workers.
	MaxBufferedRecords int
	Logger             *slog.Logger
	// OnConnect and OnDisconnect report broker connections (may be nil).
	OnConnect    func(broker string)
	OnDisconnect func(broker string)
}

// Sink sends messages to Kafka.
type Sink struct {
	cl      *kgo.Client
	topic   func(device string) string
	headers []kgo.RecordHeader
	laneHdr [2]kgo.RecordHeader
	log     *slog.Logger
}

// New builds a client. It does not wait for a broker: connections are made
// on first use and retried for ever.
func New(opts Options) (*Sink, error) {
	if len(opts.Brokers) == 0 {
		return nil, errors.New("kafka sink: no brokers")
	}
	if opts.Topic == "" {
		return nil, errors.New("kafka sink: no topic")
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	kopts := []kgo.Opt{
		kgo.SeedBrokers(opts.Brokers...),
		kgo.ClientID(opts.ClientID),
		kgo.ProducerLinger(time.Millisecond),
		// Ask for topics that do not exist yet (topic templates need it);
		// whether they are created is the broker's auto.create.topics.enable.
		kgo.AllowAutoTopicCreation(),
		kgo.RecordPartitioner(kgo.StickyKeyPartitioner(nil)),
		// A produce already sent ignores its context when the broker dies
		// (LIBRARY-NOTES); let it fail so the batch stays in the buffer
		// and is retried by the loop.
		kgo.AllowIdempotentProduceCancellation(),
		kgo.WithLogger(kslogAdapter{opts.Logger}),
	}
	if opts.MaxBufferedRecords > 0 {
		kopts = append(kopts, kgo.MaxBufferedRecords(opts.MaxBufferedRecords))
	}
	codec, err := compression(opts.Compression)
	if err != nil {
		return nil, err
	}
	kopts = append(kopts, kgo.ProducerBatchCompression(codec))
	switch opts.Acks {
	case "", "all":
		kopts = append(kopts, kgo.RequiredAcks(kgo.AllISRAcks()))
	case "leader":
		kopts = append(kopts, kgo.RequiredAcks(kgo.LeaderAck()))
	case "none":
		kopts = append(kopts, kgo.RequiredAcks(kgo.NoAck()))
	default:
		return nil, fmt.Errorf("kafka sink: acks %q: want all, leader or none", opts.Acks)
	}
	if !opts.Idempotent || (opts.Acks != "" && opts.Acks != "all") {
		kopts = append(kopts, kgo.DisableIdempotentWrite())
	}
	if opts.TLS != nil {
		kopts = append(kopts, kgo.DialTLSConfig(opts.TLS))
	}
	if opts.SASL != nil {
		kopts = append(kopts, kgo.SASL(opts.SASL))
	}
	if opts.OnConnect != nil || opts.OnDisconnect != nil {
		kopts = append(kopts, kgo.WithHooks(connHooks{opts.OnConnect, opts.OnDisconnect}))
	}
	cl, err := kgo.NewClient(kopts...)
	if err != nil {
		return nil, fmt.Errorf("kafka sink: %w", err)
	}
	s := &Sink{
		cl:      cl,
		topic:   topicFunc(opts.Topic, opts.GatewayID),
		headers: []kgo.RecordHeader{{Key: record.HeaderGateway, Value: []byte(opts.GatewayID)}, {Key: record.HeaderSchema, Value: []byte(strconv.Itoa(record.SchemaVersion))}},
		log:     opts.Logger,
	}
	s.laneHdr[0] = kgo.RecordHeader{Key: record.HeaderLane, Value: []byte("live")}
	s.laneHdr[1] = kgo.RecordHeader{Key: record.HeaderLane, Value: []byte("backlog")}
	return s, nil
}

// Name returns "kafka".
func (s *Sink) Name() string { return "kafka" }

// Send produces every message and waits for all acknowledgements. It
// returns the first error; messages that did fail or were not attempted
// are sent again by the caller (the idempotent producer makes that safe
// within one session of the client; across sessions it is at-least-once).
func (s *Sink) Send(ctx context.Context, batch []uplink.Message) error {
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		first error
		fails int
	)
	recs := make([]kgo.Record, len(batch))
	wg.Add(len(batch))
	for i := range batch {
		m := &batch[i]
		lane := s.laneHdr[0]
		if m.Backlog {
			lane = s.laneHdr[1]
		}
		r := &recs[i]
		r.Topic = s.topic(m.Key)
		r.Key = []byte(m.Key)
		r.Value = m.Value
		r.Timestamp = m.Time
		r.Headers = []kgo.RecordHeader{s.headers[0], s.headers[1], lane}
		s.cl.Produce(ctx, r, func(r *kgo.Record, err error) {
			if err != nil {
				mu.Lock()
				fails++
				if first == nil {
					first = fmt.Errorf("produce to topic %s: %w", r.Topic, err)
				}
				mu.Unlock()
			}
			wg.Done()
		})
	}
	wg.Wait()
	if first != nil && fails > 1 {
		return fmt.Errorf("%d of %d records failed, first: %w", fails, len(batch), first)
	}
	return first
}

// Ping checks that a broker answers.
func (s *Sink) Ping(ctx context.Context) error { return s.cl.Ping(ctx) }

// Close releases the client; records not yet acknowledged fail.
func (s *Sink) Close() { s.cl.Close() }

// topicFunc returns the topic for a device: tmpl itself when it has no
// placeholders, else tmpl with {device} and {gateway} replaced.
func topicFunc(tmpl, gateway string) func(string) string {
	if !strings.Contains(tmpl, "{") {
		return func(string) string { return tmpl }
	}
	tmpl = strings.ReplaceAll(tmpl, "{gateway}", gateway)
	return func(device string) string { return strings.ReplaceAll(tmpl, "{device}", device) }
}

func compression(name string) (kgo.CompressionCodec, error) {
	switch name {
	case "none", "":
		return kgo.NoCompression(), nil
	case "gzip":
		return kgo.GzipCompression(), nil
	case "snappy":
		return kgo.SnappyCompression(), nil
	case "lz4":
		return kgo.Lz4Compression(), nil
	case "zstd":
		return kgo.ZstdCompression(), nil
	}
	return kgo.NoCompression(), fmt.Errorf("kafka sink: compression %q: want none, gzip, snappy, lz4 or zstd", name)
}

type connHooks struct{ onConnect, onDisconnect func(string) }

// OnBrokerConnect implements kgo.HookBrokerConnect.
func (h connHooks) OnBrokerConnect(meta kgo.BrokerMetadata, _ time.Duration, _ net.Conn, err error) {
	if err == nil && h.onConnect != nil {
		h.onConnect(meta.Host + ":" + strconv.Itoa(int(meta.Port)))
	}
}

// OnBrokerDisconnect implements kgo.HookBrokerDisconnect.
func (h connHooks) OnBrokerDisconnect(meta kgo.BrokerMetadata, _ net.Conn) {
	if h.onDisconnect != nil {
		h.onDisconnect(meta.Host + ":" + strconv.Itoa(int(meta.Port)))
	}
}

// kslogAdapter passes franz-go's warnings and errors to slog.
type kslogAdapter struct{ l *slog.Logger }

func (a kslogAdapter) Level() kgo.LogLevel { return kgo.LogLevelWarn }

func (a kslogAdapter) Log(level kgo.LogLevel, msg string, keyvals ...any) {
	switch level {
	case kgo.LogLevelError:
		a.l.Error("kafka: "+msg, keyvals...)
	case kgo.LogLevelWarn:
		a.l.Warn("kafka: "+msg, keyvals...)
	default:
		a.l.Debug("kafka: "+msg, keyvals...)
	}
}
