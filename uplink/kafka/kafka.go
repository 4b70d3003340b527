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
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/twmb/franz-go/pkg/kerr"
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
	// MaxBufferedRecords bounds the records each lane's client holds
	// unacknowledged; it must exceed batch size × workers.
	MaxBufferedRecords int
	// DeliveryTimeout fails a batch not acknowledged within it, so that a
	// dead broker shows as failed sends (and the loop backs off and
	// retries) rather than as calls that never return. Default 10s. It is a
	// timer per batch that closes the lane's fence (so every record of the
	// lane still in the client fails with it, in order), not
	// kgo.RecordDeliveryTimeout: that one counts from the record's
	// timestamp, which here is the sample's read time, and would fail every
	// backlog record at once.
	DeliveryTimeout time.Duration
	// Linger is how long the client waits to fill a produce request.
	// Default 1ms: the loop has already batched.
	Linger time.Duration
	Logger *slog.Logger
	// OnBatchWritten, when set, is called for every produce batch the
	// broker acknowledged, with its record count and its size before and
	// after compression.
	OnBatchWritten func(records, uncompressed, compressed int)
	// OnConnect and OnDisconnect report broker connections (may be nil).
	OnConnect    func(broker string)
	OnDisconnect func(broker string)
}

// Sink sends messages to Kafka. It keeps one client per lane, so that
// backlog records queued in one client never delay live records in the
// other, and each client keeps the order of the records it is given. It
// is an uplink.Fencer: once a record of a lane fails, nothing the lane
// hands over afterwards is sent until the loop reopens the lane.
type Sink struct {
	clients [2]*kgo.Client // by uplink.Lane
	topic   func(device string) string
	gateway string
	// headerSets holds the header slices shared by the records of one
	// lane, schema and epoch: gateway, epoch, schema, lane.
	headersMu  sync.Mutex
	headerSets map[headerKey][]kgo.RecordHeader
	log        *slog.Logger
	timeout    time.Duration
	// trackers recycles the per-batch bookkeeping and its records: at
	// thousands of records a second they are most of the sink's garbage.
	trackers sync.Pool
	// lastConnErr is the error of the last failed connection attempt
	// (nil once one succeeds): it explains records that time out.
	lastConnErr atomic.Pointer[error]
	// fences keep each lane's order across a failure (uplink.Fencer).
	fences [2]fence
}

// fence closes a lane when one of its records fails: records handed over
// afterwards fail at once with uplink.ErrFenced, and every record of the
// lane still in the client is cancelled, so that none of them can reach
// the broker ahead of the failed one. franz-go keeps a partition's order
// by itself while it retries (idempotent writes); what it cannot know is
// that the loop will send the failed records again, and the records the
// loop hands over in the meantime would go first.
type fence struct {
	mu     sync.Mutex
	closed bool
	cause  error // the failure that closed it
	// gen is cancelled when the fence closes; every record handed over
	// while it was open carries it.
	gen    context.Context
	cancel context.CancelFunc
}

// open returns the context of the lane's records, or false when the fence
// is closed.
func (f *fence) open() (context.Context, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return nil, false
	}
	if f.gen == nil {
		f.gen, f.cancel = context.WithCancel(context.Background())
	}
	return f.gen, true
}

// close closes the fence with cause, if open, and cancels the records
// handed over while it was open.
func (f *fence) close(cause error) {
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		return
	}
	f.closed, f.cause = true, cause
	cancel := f.cancel
	f.gen, f.cancel = nil, nil
	f.mu.Unlock()
	if cancel != nil {
		cancel()
	}
}

// why returns the failure that closed the fence, or nil.
func (f *fence) why() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.closed {
		return nil
	}
	return f.cause
}

func (f *fence) reopen() {
	f.mu.Lock()
	f.closed, f.cause = false, nil
	f.mu.Unlock()
}

// MaxRecordBatchBytes is the largest record batch the client writes (Kafka's
// default message.max.bytes, franz-go's default): a record larger than this
// on its own is refused by the client before it is sent.
const MaxRecordBatchBytes = 1000012

// New builds the clients. It does not wait for a broker: connections are
// made on first use and retried for ever.
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
	if opts.DeliveryTimeout <= 0 {
		opts.DeliveryTimeout = 10 * time.Second
	}
	if opts.Linger <= 0 {
		opts.Linger = time.Millisecond
	}
	kopts := []kgo.Opt{
		kgo.SeedBrokers(opts.Brokers...),
		kgo.ProducerLinger(opts.Linger),
		// Ask for topics that do not exist yet (topic templates need it);
		// whether they are created is the broker's auto.create.topics.enable.
		kgo.AllowAutoTopicCreation(),
		kgo.RecordPartitioner(kgo.StickyKeyPartitioner(nil)),
		// A produce already sent ignores its context when the broker dies
		// (LIBRARY-NOTES); let it fail so the batch stays in the buffer
		// and is retried by the loop.
		kgo.AllowIdempotentProduceCancellation(),
		kgo.WithLogger(kslogAdapter{opts.Logger}),
		// Stated rather than left to the default, because the sink
		// compares a refused record's own size with it.
		kgo.ProducerBatchMaxBytes(MaxRecordBatchBytes),
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
	s := &Sink{topic: topicFunc(opts.Topic, opts.GatewayID), gateway: opts.GatewayID, log: opts.Logger, timeout: opts.DeliveryTimeout,
		headerSets: make(map[headerKey][]kgo.RecordHeader)}
	s.trackers.New = newTracker
	kopts = append(kopts, kgo.WithHooks(connHooks{onConnect: opts.OnConnect, onDisconnect: opts.OnDisconnect, lastErr: &s.lastConnErr}))
	if opts.OnBatchWritten != nil {
		kopts = append(kopts, kgo.WithHooks(batchHook(opts.OnBatchWritten)))
	}
	for _, lane := range []uplink.Lane{uplink.Live, uplink.Backlog} {
		id := opts.ClientID
		if id == "" {
			id = "iot-producer"
		}
		cl, err := kgo.NewClient(append(kopts, kgo.ClientID(id+"-"+lane.String()))...)
		if err != nil {
			s.Close()
			return nil, fmt.Errorf("kafka sink: %w", err)
		}
		s.clients[lane] = cl
	}
	return s, nil
}

// headerKey selects a set of record headers.
type headerKey struct {
	lane   uplink.Lane
	schema int
	epoch  string
}

// maxHeaderSets bounds the header sets kept: a process sees one epoch per
// buffer file, so the bound is only reached by a misuse.
const maxHeaderSets = 64

// headers returns the headers of records of k: iot-gateway, iot-epoch
// (when the record has one), iot-schema and iot-lane. The slice is shared
// and must not be modified.
func (s *Sink) headers(k headerKey) []kgo.RecordHeader {
	if k.schema == 0 {
		k.schema = record.SchemaVersion
	}
	s.headersMu.Lock()
	defer s.headersMu.Unlock()
	if h, ok := s.headerSets[k]; ok {
		return h
	}
	h := make([]kgo.RecordHeader, 0, 4)
	h = append(h, kgo.RecordHeader{Key: record.HeaderGateway, Value: []byte(s.gateway)})
	if k.epoch != "" {
		h = append(h, kgo.RecordHeader{Key: record.HeaderEpoch, Value: []byte(k.epoch)})
	}
	h = append(h,
		kgo.RecordHeader{Key: record.HeaderSchema, Value: []byte(strconv.Itoa(k.schema))},
		kgo.RecordHeader{Key: record.HeaderLane, Value: []byte(k.lane.String())})
	if len(s.headerSets) >= maxHeaderSets {
		clear(s.headerSets)
	}
	s.headerSets[k] = h
	return h
}

// Name returns "kafka".
func (s *Sink) Name() string { return "kafka" }

// Produce hands every message of batch to the lane's client in order and
// returns; done gets the per-message errors once all are settled. While
// the lane's fence is closed (a record of the lane failed and the loop has
// not reopened it) every message fails at once with uplink.ErrFenced.
func (s *Sink) Produce(ctx context.Context, lane uplink.Lane, batch []uplink.Message, done func(errs []error)) {
	if len(batch) == 0 {
		done(nil)
		return
	}
	f := &s.fences[lane]
	gen, ok := f.open()
	if !ok {
		errs := make([]error, len(batch))
		for i := range errs {
			errs[i] = uplink.ErrFenced
		}
		done(errs)
		return
	}
	// The records' context ends with the loop's, or when the fence closes
	// (a record of the lane failed, or this batch timed out: the fence
	// closes first, so nothing handed over later can overtake).
	ctx, cancel := context.WithCancel(ctx)
	stopGen := context.AfterFunc(gen, cancel)
	timer := time.AfterFunc(s.timeout, func() {
		f.close(fmt.Errorf("not acknowledged within %s: %w", s.timeout, context.DeadlineExceeded))
	})
	t := s.trackers.Get().(*tracker)
	t.sink, t.done, t.fence = s, done, f
	t.alone = len(batch) == 1 && batch[0].Alone
	t.cancel = func() {
		timer.Stop()
		stopGen()
		cancel()
	}
	t.remaining.Store(int64(len(batch)))
	t.recs = slices.Grow(t.recs[:0], len(batch))[:len(batch)]
	cl := s.clients[lane]
	var hk headerKey
	var hdrs []kgo.RecordHeader
	for i := range batch {
		m := &batch[i]
		if hdrs == nil || m.Schema != hk.schema || m.Epoch != hk.epoch {
			hk = headerKey{lane: lane, schema: m.Schema, epoch: m.Epoch}
			hdrs = s.headers(hk)
		}
		r := &t.recs[i]
		r.Topic = s.topic(m.Key)
		// The key aliases the message's string: franz-go only reads it,
		// and a copy per record was a tenth of the sink's garbage.
		r.Key = unsafe.Slice(unsafe.StringData(m.Key), len(m.Key))
		r.Value = m.Value
		r.Timestamp = m.Time
		r.Headers = hdrs
		cl.Produce(ctx, r, t.promise)
	}
}

func newTracker() any {
	t := &tracker{}
	t.promise = t.settle
	return t
}

// explain adds the last connection error to a timeout, so that a wrong
// password or an unreachable broker is named in the logs and /ready rather
// than shown as a bare deadline.
func (s *Sink) explain(err error) error {
	if err == nil || !errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	if last := s.lastConnErr.Load(); last != nil {
		return fmt.Errorf("%w; last connection error: %w", err, *last)
	}
	return err
}

// tracker collects the outcomes of one batch's records.
type tracker struct {
	sink      *Sink
	fence     *fence
	done      func([]error)
	cancel    context.CancelFunc
	recs      []kgo.Record
	promise   func(*kgo.Record, error) // t.settle, bound once
	remaining atomic.Int64
	// alone is set when the batch is one message the loop sends with
	// nothing else of its lane in flight (uplink.Message.Alone).
	alone bool
	mu    sync.Mutex
	errs  []error
}

// settle is every record's promise. The record's index is its place in
// t.recs, which franz-go hands back by pointer.
func (t *tracker) settle(r *kgo.Record, err error) {
	if err != nil {
		i := int((uintptr(unsafe.Pointer(r)) - uintptr(unsafe.Pointer(&t.recs[0]))) / unsafe.Sizeof(kgo.Record{}))
		switch {
		case errors.Is(err, context.Canceled):
			// Cancelled because the fence closed: report why it did. A
			// record cancelled behind a batch refused as a whole is no
			// suspect itself: only retried.
			if why := t.fence.why(); errors.Is(why, uplink.ErrRefusedWithBatch) {
				err = fmt.Errorf("cancelled when the lane's fence closed: %s", why)
			} else if why != nil {
				err = why
			}
		case !t.alone && refusedWithBatch(err) && recordSize(r) <= MaxRecordBatchBytes:
			// franz-go failed every record it held for the partition with
			// the error of one produce batch: the loop sends them again in
			// smaller batches to find the one the broker refuses.
			err = fmt.Errorf("%w (%w)", err, uplink.ErrRefusedWithBatch)
		}
		err = t.sink.explain(err)
		if !t.sink.Permanent(err) {
			t.fence.close(err)
		}
		t.mu.Lock()
		if t.errs == nil {
			t.errs = make([]error, len(t.recs))
		}
		t.errs[i] = err
		t.mu.Unlock()
	}
	if t.remaining.Add(-1) != 0 {
		return
	}
	t.mu.Lock()
	s, errs, done, cancel := t.sink, t.errs, t.done, t.cancel
	t.errs, t.done, t.cancel, t.sink, t.fence, t.alone = nil, nil, nil, nil, nil, false
	t.mu.Unlock()
	cancel()
	// franz-go is done with every record: they can serve the next batch.
	clear(t.recs)
	s.trackers.Put(t)
	done(errs)
}

// refusedWithBatch reports whether err is a broker's refusal of a produce
// batch that may be caused by one of its records (too large, invalid, a
// bad timestamp). franz-go fails every record it holds for the partition
// with such an error, not only the batch's (kgo sink.go, finishBatch →
// failAllRecords).
func refusedWithBatch(err error) bool {
	for _, e := range []error{kerr.MessageTooLarge, kerr.RecordListTooLarge, kerr.InvalidRecord, kerr.InvalidTimestamp} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// recordSize is a record's size as franz-go weighs it against
// MaxRecordBatchBytes: key, value and headers.
func recordSize(r *kgo.Record) int {
	n := len(r.Key) + len(r.Value)
	for _, h := range r.Headers {
		n += len(h.Key) + len(h.Value)
	}
	return n
}

// Permanent reports whether err means the broker will never take the
// record: it is too large, the topic name is invalid, or the record itself
// is invalid. A record refused with the rest of its produce batch
// (uplink.ErrRefusedWithBatch) is not refused for good until it was sent
// alone and refused again. Everything else — connection failures,
// timeouts, leader changes, authentication and authorisation failures —
// is retried.
func (s *Sink) Permanent(err error) bool {
	if errors.Is(err, uplink.ErrRefusedWithBatch) {
		return false
	}
	for _, e := range []error{
		kerr.MessageTooLarge, kerr.RecordListTooLarge, kerr.InvalidRecord,
		kerr.InvalidTopicException, kerr.InvalidTimestamp, kerr.InvalidRequiredAcks,
	} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// Refused reports whether err is the broker refusing the gateway for a
// reason an operator fixes on the broker's side: an ACL
// (TOPIC_AUTHORIZATION_FAILED, CLUSTER_AUTHORIZATION_FAILED), a topic
// policy (POLICY_VIOLATION) or the credentials (SASL_AUTHENTICATION_FAILED).
// One ACL mistake must not move the whole stream into the dead-letter
// queue: the loop keeps such records in the buffer and retries them,
// showing the sink as refused (uplink.Refuser).
func (s *Sink) Refused(err error) bool {
	for _, e := range []error{
		kerr.TopicAuthorizationFailed, kerr.ClusterAuthorizationFailed,
		kerr.PolicyViolation, kerr.SaslAuthenticationFailed,
	} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// Reopen implements uplink.Fencer: the loop has seen every record of the
// lane settle and sends the failed ones again first.
func (s *Sink) Reopen(lane uplink.Lane) { s.fences[lane].reopen() }

// Ping checks that a broker answers.
func (s *Sink) Ping(ctx context.Context) error { return s.clients[uplink.Live].Ping(ctx) }

// Warm loads the live client's producer id (for an idempotent producer)
// and opens its first broker connection, so that the first records after a
// start wait only for their topic's metadata. It gives up after the
// delivery timeout; a failure is left to the first produce to report.
func (s *Sink) Warm(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	if _, _, err := s.clients[uplink.Live].ProducerID(ctx); err != nil {
		s.log.Debug("kafka sink: loading the producer id failed; the first produce retries", "err", err)
		return
	}
	if err := s.clients[uplink.Live].Ping(ctx); err != nil {
		s.log.Debug("kafka sink: no broker answered; the first produce retries", "err", err)
	}
}

// Probe implements uplink.Prober: a metadata request to any broker.
func (s *Sink) Probe(ctx context.Context) error { return s.Ping(ctx) }

// Close releases the clients; records not yet acknowledged fail.
func (s *Sink) Close() {
	for _, cl := range s.clients {
		if cl != nil {
			cl.Close()
		}
	}
}

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

type connHooks struct {
	onConnect, onDisconnect func(string)
	lastErr                 *atomic.Pointer[error]
}

// OnBrokerConnect implements kgo.HookBrokerConnect. It is called after the
// dial and after the connection's set-up (API versions, SASL), with the
// error of either.
func (h connHooks) OnBrokerConnect(meta kgo.BrokerMetadata, _ time.Duration, _ net.Conn, err error) {
	addr := meta.Host + ":" + strconv.Itoa(int(meta.Port))
	if err != nil {
		e := fmt.Errorf("broker %s: %w", addr, err)
		h.lastErr.Store(&e)
		return
	}
	h.lastErr.Store(nil)
	if h.onConnect != nil {
		h.onConnect(addr)
	}
}

// OnBrokerDisconnect implements kgo.HookBrokerDisconnect.
func (h connHooks) OnBrokerDisconnect(meta kgo.BrokerMetadata, _ net.Conn) {
	if h.onDisconnect != nil {
		h.onDisconnect(meta.Host + ":" + strconv.Itoa(int(meta.Port)))
	}
}

// batchHook reports acknowledged produce batches.
type batchHook func(records, uncompressed, compressed int)

// OnProduceBatchWritten implements kgo.HookProduceBatchWritten.
func (h batchHook) OnProduceBatchWritten(_ kgo.BrokerMetadata, _ string, _ int32, m kgo.ProduceBatchMetrics) {
	h(m.NumRecords, m.UncompressedBytes, m.CompressedBytes)
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
