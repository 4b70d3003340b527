// Package mqtt is the MQTT sink, built on Eclipse Paho
// (github.com/eclipse/paho.mqtt.golang). It publishes each message to a
// topic made from a template, as the record's JSON or as a Sparkplug B
// payload, and reports a message delivered only when the broker has
// acknowledged it (PUBACK at QoS 1). It knows nothing of the buffer or of
// PLCs.
//
// One MQTT connection carries both lanes. The sink owns the connection's
// life: it connects on first use, reconnects with capped exponential
// backoff and jitter, and keeps a persistent session (clean session off,
// a stable client id) so that messages in flight when a connection drops
// are sent again on the next one before anything new. paho's message
// store is the sink's own (see store.go): bounded, ordered, and the source
// of acknowledgements.
package mqtt

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/eclipse/paho.mqtt.golang/packets"

	"github.com/iot-producer/iot-producer/uplink"
)

// Options configures a Sink. Zero durations and counts take the defaults
// named on each field.
type Options struct {
	// Broker is the broker's URL: tcp:// or mqtt:// (plain), ssl://,
	// tls:// or mqtts:// (TLS), ws:// or wss:// (WebSocket).
	Broker string
	// ClientID is the MQTT client id. It must be stable across restarts
	// for the broker to keep the session; default iot-producer-<gateway>.
	ClientID string
	// GatewayID fills {gateway} in topics.
	GatewayID string
	// Topic is the topic template for JSON payloads, with {gateway},
	// {device} and {tag}. Default iot/{gateway}/{device}.
	Topic string
	// QoS of the data messages: 0 or 1. A message is reported delivered
	// on PUBACK (1), or once written to the connection (0).
	QoS byte
	// Retain sets the retain flag on data messages.
	Retain   bool
	Username string
	Password string
	// TLS, when not nil, is used for ssl://, tls://, mqtts:// and wss://.
	TLS *tls.Config
	// KeepAlive is the MQTT keep-alive. Default 30s.
	KeepAlive time.Duration
	// ConnectTimeout bounds one connection attempt. Default 10s.
	ConnectTimeout time.Duration
	// DeliveryTimeout fails the messages of a batch not acknowledged within
	// it (they stay in the buffer and the loop sends them again after a
	// backoff). Default 10s.
	DeliveryTimeout time.Duration
	// ReconnectMin and ReconnectMax bound the wait between connection
	// attempts; it doubles from min to max, with jitter. Defaults 500ms
	// and 10s.
	ReconnectMin, ReconnectMax time.Duration
	// MaxInflight bounds the messages handed to the client and not yet
	// acknowledged: beyond it, batches fail at once and stay in the buffer.
	// It must exceed batch size × workers × 2 lanes. Default 4000.
	MaxInflight int
	// Sparkplug, when not nil, sends Sparkplug B payloads instead of JSON.
	Sparkplug *SparkplugOptions
	Logger    *slog.Logger
	// OnConnect and OnDisconnect report the connection (may be nil).
	OnConnect    func(broker string)
	OnDisconnect func(broker string, err error)
}

// Defaults.
const (
	DefaultTopic           = "iot/{gateway}/{device}"
	DefaultKeepAlive       = 30 * time.Second
	DefaultConnectTimeout  = 10 * time.Second
	DefaultDeliveryTimeout = 10 * time.Second
	DefaultReconnectMin    = 500 * time.Millisecond
	DefaultReconnectMax    = 10 * time.Second
	DefaultMaxInflight     = 4000
	// maxMessageIDs is the number of packet identifiers MQTT has.
	maxMessageIDs = 65535
)

// ErrNotConnected fails a batch while there is no connection; it carries
// the last connection error when there is one.
var ErrNotConnected = errors.New("not connected to the MQTT broker")

// ErrInflightFull fails a batch that would take the client past
// MaxInflight unacknowledged messages.
var ErrInflightFull = errors.New("too many messages await acknowledgement")

// errNotAcked is a delivery timeout.
type errNotAcked struct{ after time.Duration }

func (e errNotAcked) Error() string {
	return fmt.Sprintf("not acknowledged by the broker within %s", e.after)
}

// EncodeError is a message that cannot be published at all (a record whose
// value cannot be read). It is permanent: the loop dead-letters it.
type EncodeError struct{ Err error }

func (e *EncodeError) Error() string { return "encode: " + e.Err.Error() }
func (e *EncodeError) Unwrap() error { return e.Err }

// publish is one MQTT message to send.
type publish struct {
	topic   string
	payload []byte
	qos     byte
	retain  bool
}

// codec turns messages into publishes. A session codec (Sparkplug) also
// opens each session, answers commands, and may put births before data.
type codec interface {
	// encode appends to out what m needs, in order; the last is m's own.
	// It is called under the sink's publish lock, in publish order.
	encode(lane uplink.Lane, m *uplink.Message, out []publish) ([]publish, error)
	// sessionStart returns what opens a new session (called under the
	// publish lock, before any data).
	sessionStart() []publish
	// sessionEnd returns what a graceful disconnect sends first (called
	// under the publish lock): the broker drops the will on a DISCONNECT.
	sessionEnd() []publish
	// will returns the last will for the next connection, or nil.
	will() *publish
	// cleanSession reports whether sessions must be clean.
	cleanSession() bool
	// commands returns the topic to subscribe to and a handler that
	// reports whether a command asks for the session to be opened again
	// (a Sparkplug rebirth), or "" for none. The handler runs outside the
	// publish lock and must not touch the codec's state.
	commands() (string, func(topic string, payload []byte) bool)
}

// Sink publishes messages to an MQTT broker.
type Sink struct {
	opts  Options
	log   *slog.Logger
	store *store
	codec codec

	// pubMu serialises publishes: the store binds each stored publish to
	// the batch message named just before it, and session codecs number
	// messages in publish order.
	pubMu  sync.Mutex
	client paho.Client // the current connection's client; under pubMu
	online atomic.Bool // a connection is up and its session opened

	lastErr atomic.Pointer[error] // last connection error, nil once connected

	startOnce sync.Once
	ctx       context.Context
	cancel    context.CancelFunc
	wg        sync.WaitGroup
	lost      chan paho.Client
	closed    atomic.Bool
	// attempted is closed once the first connection attempt has ended, so
	// that the first batches wait for it rather than fail.
	attempted     chan struct{}
	attemptedOnce sync.Once

	// probeAddr is the broker's host:port, dialled by Probe.
	probeAddr string
	// unreachable is set when the last connection attempt failed before
	// the broker answered (the network: refused, reset, timed out) or a
	// probe could not reach the broker's address: a probe that reaches it
	// then ends the reconnect wait. When the broker itself said no (a
	// CONNACK refusal) the reconnect backoff applies.
	unreachable atomic.Bool
	// kick ends the reconnect loop's wait: a probe found the broker's
	// address answering again.
	kick chan struct{}
	// upMu guards upCh, which is closed while a connection is up and
	// replaced by an open one when it drops; Probe waits on it.
	upMu sync.Mutex
	upCh chan struct{}

	// fenced closes a lane, by uplink.Lane, once one of its messages
	// failed (uplink.Fencer): later batches of the lane fail unsent with
	// uplink.ErrFenced until the loop reopens it, so that none of them
	// reaches the broker ahead of the failed message's re-send.
	fenced [2]atomic.Bool
}

// New checks the options and returns a sink. It does not connect: the
// first Produce (or Start) does, and connections are retried for ever.
func New(opts Options) (*Sink, error) {
	if opts.Broker == "" {
		return nil, errors.New("mqtt sink: no broker")
	}
	u, err := url.Parse(opts.Broker)
	if err != nil {
		return nil, fmt.Errorf("mqtt sink: broker %q: %w", opts.Broker, err)
	}
	switch u.Scheme {
	case "tcp", "mqtt", "ws":
	case "ssl", "tls", "mqtts", "wss":
		if opts.TLS == nil {
			opts.TLS = &tls.Config{MinVersion: tls.VersionTLS12}
		}
	default:
		return nil, fmt.Errorf("mqtt sink: broker %q: unknown scheme %q; want tcp, mqtt, ssl, tls, mqtts, ws or wss", opts.Broker, u.Scheme)
	}
	if u.Host == "" {
		return nil, fmt.Errorf("mqtt sink: broker %q: no host", opts.Broker)
	}
	if opts.QoS > 1 {
		return nil, fmt.Errorf("mqtt sink: qos %d: want 0 or 1 (QoS 2 is not offered: brokers bound its in-flight window and drop a client that sends a batch past it; deduplicate QoS 1 on gateway, device, tag and seq)", opts.QoS)
	}
	if opts.ClientID == "" {
		opts.ClientID = "iot-producer-" + opts.GatewayID
	}
	if opts.Topic == "" {
		opts.Topic = DefaultTopic
	}
	setDefault(&opts.KeepAlive, DefaultKeepAlive)
	setDefault(&opts.ConnectTimeout, DefaultConnectTimeout)
	setDefault(&opts.DeliveryTimeout, DefaultDeliveryTimeout)
	setDefault(&opts.ReconnectMin, DefaultReconnectMin)
	setDefault(&opts.ReconnectMax, DefaultReconnectMax)
	opts.ReconnectMax = max(opts.ReconnectMax, opts.ReconnectMin)
	if opts.MaxInflight <= 0 {
		opts.MaxInflight = DefaultMaxInflight
	}
	if opts.MaxInflight > maxMessageIDs-100 {
		return nil, fmt.Errorf("mqtt sink: max_inflight %d: MQTT has %d packet identifiers; want at most %d", opts.MaxInflight, maxMessageIDs, maxMessageIDs-100)
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	s := &Sink{opts: opts, log: opts.Logger, store: newStore(), lost: make(chan paho.Client, 1), attempted: make(chan struct{}),
		probeAddr: probeAddr(u), kick: make(chan struct{}, 1), upCh: make(chan struct{})}
	if opts.Sparkplug != nil {
		sp, err := newSparkplugCodec(*opts.Sparkplug, opts.GatewayID, opts.QoS, opts.Logger)
		if err != nil {
			return nil, fmt.Errorf("mqtt sink: %w", err)
		}
		s.codec = sp
	} else {
		jc, err := newJSONCodec(opts.Topic, opts.GatewayID, opts.QoS, opts.Retain)
		if err != nil {
			return nil, fmt.Errorf("mqtt sink: %w", err)
		}
		s.codec = jc
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	return s, nil
}

func setDefault(d *time.Duration, def time.Duration) {
	if *d <= 0 {
		*d = def
	}
}

// Name returns "mqtt".
func (s *Sink) Name() string { return "mqtt" }

// Start begins connecting in the background; Produce calls it too.
func (s *Sink) Start() {
	s.startOnce.Do(func() {
		if s.closed.Load() {
			return
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.run(s.ctx)
		}()
	})
}

// Connected reports whether a connection is up and its session open.
func (s *Sink) Connected() bool { return s.online.Load() }

// Produce publishes every message of batch in order and returns; done
// gets the per-message errors once each message is acknowledged, failed,
// or left unacknowledged past the delivery timeout.
func (s *Sink) Produce(ctx context.Context, lane uplink.Lane, batch []uplink.Message, done func(errs []error)) {
	if len(batch) == 0 {
		done(nil)
		return
	}
	s.Start()
	t := newTracker(len(batch), done)
	fence := &s.fenced[lane]
	t.failed = func(err error) {
		if !s.Permanent(err) {
			fence.Store(true)
		}
	}
	if fence.Load() {
		t.failRest(uplink.ErrFenced)
		return
	}
	if s.closed.Load() {
		t.failRest(uplink.ErrClosed)
		return
	}
	if !s.online.Load() {
		select {
		case <-s.attempted:
		case <-ctx.Done():
		}
	}
	if !s.online.Load() {
		t.failRest(s.notConnected())
		return
	}
	if held := s.store.held(); held+len(batch) > s.opts.MaxInflight {
		t.failRest(fmt.Errorf("%w: %d held by the client, max_inflight %d", ErrInflightFull, held, s.opts.MaxInflight))
		return
	}
	t.arm(ctx, s.opts.DeliveryTimeout, s.explain)

	var qos0 []qos0Wait
	var pubs []publish
	s.pubMu.Lock()
	var stop error // once set, the rest of the batch fails: order per device holds
	for i := range batch {
		if stop == nil && fence.Load() {
			// A message of the lane failed meanwhile (a delivery
			// timeout, a connection lost): nothing goes ahead of it.
			stop = uplink.ErrFenced
		}
		if stop != nil {
			t.failOne(i, stop)
			continue
		}
		var err error
		pubs, err = s.codec.encode(lane, &batch[i], pubs[:0])
		if err != nil {
			t.failOne(i, &EncodeError{Err: err})
			continue
		}
		for j, p := range pubs {
			r := ref{}
			if j == len(pubs)-1 {
				r = ref{t: t, i: i}
			}
			tok, err := s.publishLocked(p, r)
			if err != nil {
				stop = err
				t.failOne(i, err)
				break
			}
			if p.qos == 0 && r.t != nil {
				qos0 = append(qos0, qos0Wait{tok, i})
			}
		}
	}
	s.pubMu.Unlock()
	if len(qos0) > 0 {
		go waitQoS0(t, qos0)
	}
}

type qos0Wait struct {
	tok paho.Token
	i   int
}

// waitQoS0 settles QoS 0 messages once paho has written them. A token
// that never completes (its connection died first) is left when the
// tracker's timeout has finished the batch.
func waitQoS0(t *tracker, ws []qos0Wait) {
	for _, w := range ws {
		select {
		case <-w.tok.Done():
		case <-t.fin:
			return
		}
		if err := w.tok.Error(); err != nil {
			t.failOne(w.i, err)
		} else {
			t.ack(w.i)
		}
	}
}

// publishLocked hands p to the current client, binding it to r in the
// store. It returns an error when the client refused it at once.
func (s *Sink) publishLocked(p publish, r ref) (paho.Token, error) {
	if !s.online.Load() || s.client == nil {
		return nil, s.notConnected()
	}
	if p.qos > 0 && r.t != nil {
		s.store.setBind(r)
	}
	tok := s.client.Publish(p.topic, p.qos, p.retain, p.payload)
	s.store.clearBind()
	select {
	case <-tok.Done():
		if err := tok.Error(); err != nil {
			return nil, s.explain(fmt.Errorf("publish to %s: %w", p.topic, err))
		}
	default:
	}
	return tok, nil
}

// notConnected returns ErrNotConnected with the last connection error.
func (s *Sink) notConnected() error {
	if last := s.lastErr.Load(); last != nil {
		return fmt.Errorf("%w %s: %w", ErrNotConnected, s.opts.Broker, *last)
	}
	return fmt.Errorf("%w %s", ErrNotConnected, s.opts.Broker)
}

// explain adds the connection's state to a timeout, so that a wrong
// password or an unreachable broker is named in the logs and /ready.
func (s *Sink) explain(err error) error {
	if s.online.Load() {
		return err
	}
	return fmt.Errorf("%w; %w", err, s.notConnected())
}

// Reopen implements uplink.Fencer: the loop has seen every message of the
// lane settle and sends the failed ones again first.
func (s *Sink) Reopen(lane uplink.Lane) { s.fenced[lane].Store(false) }

// Refused implements uplink.Refuser: the broker refused the connection
// for a reason an operator must fix — bad user name or password, not
// authorised, client id rejected, protocol version refused (CONNACK codes
// 4, 5, 2 and 1). The loop keeps the records and retries them with
// backoff, showing the sink as refused, never dead-lettering them.
// A publish the broker's ACL denies cannot be seen in MQTT 3.1.1:
// Mosquitto acknowledges it and drops it.
func (s *Sink) Refused(err error) bool {
	return isRefusal(err)
}

func isRefusal(err error) bool {
	for _, e := range []error{
		packets.ErrorRefusedBadUsernameOrPassword, packets.ErrorRefusedNotAuthorised,
		packets.ErrorRefusedIDRejected, packets.ErrorRefusedBadProtocolVersion,
	} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// Probe implements uplink.Prober. It returns nil while the connection is
// up. Otherwise it dials the broker's address (TCP only): when that
// answers after the network failed, it ends the reconnect loop's wait, so
// that a restored link is used at once rather than after the reconnect
// backoff, and waits within ctx for the connection to come up. After the
// broker itself refused the connection it does not: the reconnect backoff
// applies.
func (s *Sink) Probe(ctx context.Context) error {
	if s.online.Load() {
		return nil
	}
	if s.closed.Load() {
		return uplink.ErrClosed
	}
	s.Start()
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", s.probeAddr)
	if err != nil {
		s.unreachable.Store(true)
		return fmt.Errorf("probe %s: %w", s.probeAddr, err)
	}
	c.Close()
	if !s.unreachable.Swap(false) {
		return fmt.Errorf("probe %s: the address answers but the connection is not up: %w", s.probeAddr, s.notConnected())
	}
	select {
	case s.kick <- struct{}{}:
	default:
	}
	s.upMu.Lock()
	up := s.upCh
	s.upMu.Unlock()
	select {
	case <-up:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("probe %s: the address answers, the MQTT connection is not up yet: %w", s.probeAddr, ctx.Err())
	}
}

// setUp records that a connection came up (true) or went down.
func (s *Sink) setUp(up bool) {
	s.upMu.Lock()
	defer s.upMu.Unlock()
	select {
	case <-s.upCh:
		if !up {
			s.upCh = make(chan struct{})
		}
	default:
		if up {
			close(s.upCh)
		}
	}
}

// probeAddr returns the host:port Probe dials for the broker URL u.
func probeAddr(u *url.URL) string {
	if u.Port() != "" {
		return u.Host
	}
	port := "1883"
	switch u.Scheme {
	case "ssl", "tls", "mqtts":
		port = "8883"
	case "ws":
		port = "80"
	case "wss":
		port = "443"
	}
	return net.JoinHostPort(u.Hostname(), port)
}

// Permanent reports whether err means the message can never be
// published: only messages that cannot be encoded. MQTT 3.1.1 has no
// per-message refusal; everything else is retried.
func (s *Sink) Permanent(err error) bool {
	var e *EncodeError
	return errors.As(err, &e)
}

// Close disconnects; messages not yet acknowledged fail and stay in the
// buffer. A Sparkplug session ends with a DDEATH for every device and the
// NDEATH first, as the broker does not send the will on a DISCONNECT.
func (s *Sink) Close() {
	if s.closed.Swap(true) {
		return
	}
	s.cancel()
	s.wg.Wait()
	s.pubMu.Lock()
	cl := s.client
	var last []paho.Token
	if cl != nil && s.online.Load() {
		for _, p := range s.codec.sessionEnd() {
			if tok, err := s.publishLocked(p, ref{}); err == nil {
				last = append(last, tok)
			}
		}
	}
	s.client = nil
	s.online.Store(false)
	s.setUp(false)
	s.pubMu.Unlock()
	if cl != nil && cl.IsConnectionOpen() {
		// Give what ends the session a moment to be acknowledged.
		deadline := time.After(2 * time.Second)
	wait:
		for _, tok := range last {
			select {
			case <-tok.Done():
			case <-deadline:
				break wait
			}
		}
		cl.Disconnect(250)
	}
	s.store.failAll(uplink.ErrClosed)
}

// run connects, waits for the connection to drop, and connects again,
// until ctx is done.
func (s *Sink) run(ctx context.Context) {
	attempt := 0
	defer s.attemptedOnce.Do(func() { close(s.attempted) })
	for ctx.Err() == nil {
		cl, err := s.connect(ctx)
		s.attemptedOnce.Do(func() { close(s.attempted) })
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			s.lastErr.Store(&err)
			s.unreachable.Store(errors.Is(err, packets.ErrorNetworkError))
			wait := backoff(attempt, s.opts.ReconnectMin, s.opts.ReconnectMax)
			attempt++
			if isRefusal(err) {
				s.log.Error("the MQTT broker refuses the gateway: fix its user name, password or ACL; records stay in the buffer and the connection is retried",
					"broker", s.opts.Broker, "client_id", s.opts.ClientID, "attempt", attempt, "retry_in", wait.Round(time.Millisecond), "err", err)
			} else {
				s.log.Warn("mqtt connection failed; retrying", "broker", s.opts.Broker, "attempt", attempt, "retry_in", wait.Round(time.Millisecond), "err", err)
			}
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			case <-s.kick:
				t.Stop()
			}
			continue
		}
		attempt = 0
		s.lastErr.Store(nil)
		s.unreachable.Store(false)
		s.log.Info("mqtt connected", "broker", s.opts.Broker, "client_id", s.opts.ClientID, "held", s.store.held())
		if f := s.opts.OnConnect; f != nil {
			f(s.opts.Broker)
		}
		if !s.waitLost(ctx, cl) {
			return
		}
	}
}

// waitLost waits until cl's connection is lost (true) or ctx is done.
func (s *Sink) waitLost(ctx context.Context, cl paho.Client) bool {
	for {
		select {
		case <-ctx.Done():
			return false
		case gone := <-s.lost:
			if gone == cl {
				return true
			}
		}
	}
}

// connect makes one connection attempt with a new paho client sharing the
// sink's store, and opens its session.
func (s *Sink) connect(ctx context.Context) (paho.Client, error) {
	o := paho.NewClientOptions().
		AddBroker(s.opts.Broker).
		SetClientID(s.opts.ClientID).
		SetUsername(s.opts.Username).
		SetPassword(s.opts.Password).
		SetCleanSession(s.codec.cleanSession()).
		SetKeepAlive(s.opts.KeepAlive).
		SetPingTimeout(min(10*time.Second, s.opts.KeepAlive)).
		SetConnectTimeout(s.opts.ConnectTimeout).
		SetWriteTimeout(s.opts.DeliveryTimeout).
		SetAutoReconnect(false).
		SetConnectRetry(false).
		SetOrderMatters(false).
		SetProtocolVersion(4)
	o.SetStore(s.store)
	if s.opts.TLS != nil {
		o.SetTLSConfig(s.opts.TLS)
	}
	s.pubMu.Lock()
	w := s.codec.will()
	s.pubMu.Unlock()
	if w != nil {
		o.SetBinaryWill(w.topic, w.payload, w.qos, w.retain)
	}
	var cl paho.Client
	o.SetConnectionLostHandler(func(c paho.Client, err error) { s.connectionLost(c, err) })
	cl = paho.NewClient(o)
	tok := cl.Connect()
	select {
	case <-tok.Done():
	case <-ctx.Done():
		cl.Disconnect(0)
		return nil, ctx.Err()
	}
	if err := tok.Error(); err != nil {
		return nil, fmt.Errorf("connect to %s: %w", s.opts.Broker, err)
	}
	// paho has queued what the store held (the session's messages in
	// flight) before returning: new publishes follow them.
	if topic, handle := s.codec.commands(); topic != "" {
		st := cl.Subscribe(topic, 1, func(_ paho.Client, m paho.Message) {
			if handle(m.Topic(), m.Payload()) {
				s.restartSession(cl)
			}
		})
		if !st.WaitTimeout(s.opts.ConnectTimeout) || st.Error() != nil {
			cl.Disconnect(0)
			return nil, fmt.Errorf("subscribe to %s on %s: %v", topic, s.opts.Broker, st.Error())
		}
	}
	s.pubMu.Lock()
	if !cl.IsConnectionOpen() {
		// Lost before it became the current connection: connectionLost
		// ignored it.
		s.pubMu.Unlock()
		return nil, fmt.Errorf("connection to %s lost while opening the session", s.opts.Broker)
	}
	s.client = cl
	s.online.Store(true)
	for _, p := range s.codec.sessionStart() {
		if _, err := s.publishLocked(p, ref{}); err != nil {
			s.online.Store(false)
			s.client = nil
			s.pubMu.Unlock()
			cl.Disconnect(0)
			return nil, fmt.Errorf("open session on %s: %w", s.opts.Broker, err)
		}
	}
	s.setUp(true)
	s.pubMu.Unlock()
	return cl, nil
}

// restartSession publishes what opens the session again (a Sparkplug
// NBIRTH and the DBIRTHs) on cl, if cl is still the current client.
func (s *Sink) restartSession(cl paho.Client) {
	s.pubMu.Lock()
	defer s.pubMu.Unlock()
	if s.client != cl {
		return
	}
	for _, p := range s.codec.sessionStart() {
		if _, err := s.publishLocked(p, ref{}); err != nil {
			s.log.Warn("mqtt publish failed", "topic", p.topic, "err", err)
			return
		}
	}
}

func (s *Sink) connectionLost(cl paho.Client, err error) {
	s.pubMu.Lock()
	current := s.client == cl
	if current {
		s.online.Store(false)
		s.setUp(false)
		s.client = nil
	}
	s.pubMu.Unlock()
	if !current {
		return
	}
	e := fmt.Errorf("connection to %s lost: %w", s.opts.Broker, err)
	s.lastErr.Store(&e)
	s.log.Warn("mqtt connection lost; reconnecting", "broker", s.opts.Broker, "held", s.store.held(), "err", err)
	if s.codec.cleanSession() {
		// A clean session will not resend what is in flight: fail it now,
		// the loop sends it again from the buffer.
		s.store.failAll(e)
	}
	if f := s.opts.OnDisconnect; f != nil {
		f(s.opts.Broker, err)
	}
	select {
	case s.lost <- cl:
	default:
	}
}

// backoff returns the wait before attempt n (from 0): min doubled n
// times, capped at max, with ±20% jitter.
func backoff(n int, lo, hi time.Duration) time.Duration {
	d := lo
	for i := 0; i < n && d < hi; i++ {
		d *= 2
	}
	d = min(d, hi)
	jitter := 0.8 + 0.4*rand.Float64() //nolint:gosec // jitter, not security
	return time.Duration(float64(d) * jitter)
}

// topicFunc returns the topic for a message: tmpl with {gateway}, {device}
// and {tag} replaced. It reads the tag from the record's JSON only when
// the template asks for it.
func topicFunc(tmpl, gateway string) (func(device string, value []byte) (string, error), error) {
	if err := checkTopic(tmpl); err != nil {
		return nil, err
	}
	tmpl = strings.ReplaceAll(tmpl, "{gateway}", gateway)
	hasDevice, hasTag := strings.Contains(tmpl, "{device}"), strings.Contains(tmpl, "{tag}")
	switch {
	case !hasDevice && !hasTag:
		return func(string, []byte) (string, error) { return tmpl, nil }, nil
	case !hasTag:
		return func(device string, _ []byte) (string, error) {
			return strings.ReplaceAll(tmpl, "{device}", device), nil
		}, nil
	}
	return func(device string, value []byte) (string, error) {
		tag, err := tagOf(value)
		if err != nil {
			return "", err
		}
		return strings.NewReplacer("{device}", device, "{tag}", tag).Replace(tmpl), nil
	}, nil
}

// TopicPlaceholders are the names a topic template may use in braces.
var TopicPlaceholders = []string{"gateway", "device", "tag"}

// checkTopic checks a topic template: no wildcards, only known
// placeholders, not empty.
func checkTopic(tmpl string) error {
	if tmpl == "" {
		return errors.New("topic: empty")
	}
	rest := tmpl
	for _, p := range TopicPlaceholders {
		rest = strings.ReplaceAll(rest, "{"+p+"}", "x")
	}
	if i := strings.IndexAny(rest, "{}"); i >= 0 {
		return fmt.Errorf("topic %q: unknown placeholder or stray brace; want {%s}", tmpl, strings.Join(TopicPlaceholders, "}, {"))
	}
	if strings.ContainsAny(rest, "+#\x00") {
		return fmt.Errorf("topic %q: a topic to publish to cannot contain + or # wildcards", tmpl)
	}
	return nil
}
