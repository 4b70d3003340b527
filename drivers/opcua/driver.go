package opcua

import (
	"context"
	"crypto/rsa"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gopcua/opcua"
	"github.com/gopcua/opcua/id"
	"github.com/gopcua/opcua/ua"

	"github.com/iot-producer/iot-producer/drivers"
)

// Error kinds passed to Options.OnError.
const (
	KindConnect   = "connect"
	KindSecurity  = "security"
	KindRead      = "read"
	KindSubscribe = "subscribe"
	KindSilent    = "silent"
	KindSession   = "session"
)

// Options configures one Driver.
type Options struct {
	// Name is the device name carried by every sample.
	Name   string
	Config *Config
	// StateDir holds the application certificate and the trust list
	// (<StateDir>/opcua); required unless the security policy is None.
	StateDir string
	// OnError, when set, is called with a Kind constant for every failure;
	// it must not block.
	OnError func(kind string)
	Logger  *slog.Logger
}

// tagSpec is a tag's parsed config.
type tagSpec struct {
	name string
	ref  NodeRef
	path []PathElement
	want ua.TypeID
}

// Driver reads one OPC UA server. It implements drivers.Driver.
type Driver struct {
	name     string
	cfg      Config
	tags     []tagSpec
	stateDir string
	onError  func(string)
	log      *slog.Logger
	userCert []byte
	userKey  *rsa.PrivateKey

	running atomic.Bool
	st      stats
	// channelLifetime, when set, is the secure channel lifetime asked of
	// the server (gopcua's default is an hour): tests renew channels with
	// it.
	channelLifetime time.Duration
}

var _ drivers.Driver = (*Driver)(nil)

// NewDriver checks the options and prepares everything that can be done
// without connecting: node ids and browse paths parsed, user certificate
// read. Errors name the device and the key.
func NewDriver(o Options) (*Driver, error) {
	if o.Name == "" {
		return nil, errors.New("opcua: device name is empty")
	}
	if o.Config == nil {
		return nil, fmt.Errorf("opcua %s: no config", o.Name)
	}
	c := *o.Config
	if ps := c.Validate(); len(ps) > 0 {
		return nil, fmt.Errorf("opcua %s: %s: %s", o.Name, ps[0].Key, ps[0].Msg)
	}
	fill(&c)
	if c.SecurityPolicy != "None" && o.StateDir == "" {
		return nil, fmt.Errorf("opcua %s: security policy %s needs a state directory for the application certificate and trust list", o.Name, c.SecurityPolicy)
	}
	d := &Driver{name: o.Name, cfg: c, stateDir: o.StateDir, onError: o.OnError, log: o.Logger}
	if d.log == nil {
		d.log = slog.New(slog.DiscardHandler)
	}
	d.log = d.log.With("device", o.Name, "endpoint", c.Endpoint)
	for _, t := range c.Tags {
		s := tagSpec{name: t.Name}
		var err error
		if t.Address != "" {
			s.ref, err = ParseNode(t.Address)
		} else {
			s.path, err = ParsePath(t.BrowsePath)
		}
		if err != nil {
			return nil, fmt.Errorf("opcua %s: tag %s: %w", o.Name, t.Name, err)
		}
		if s.want, err = parseType(t.Type); err != nil {
			return nil, fmt.Errorf("opcua %s: tag %s: type %w", o.Name, t.Name, err)
		}
		d.tags = append(d.tags, s)
	}
	if c.Auth == "certificate" {
		var err error
		if d.userCert, d.userKey, err = LoadKeyPair(c.UserCertFile, c.UserKeyFile); err != nil {
			return nil, fmt.Errorf("opcua %s: user certificate: %w", o.Name, err)
		}
	}
	d.st.state.Store(int32(StateConnecting))
	return d, nil
}

// fill applies defaults to unset fields.
func fill(c *Config) {
	d := NewConfig()
	if c.Mode == "" {
		c.Mode = d.Mode
	}
	if c.PollInterval <= 0 {
		c.PollInterval = d.PollInterval
	}
	if c.SamplingInterval <= 0 {
		c.SamplingInterval = c.PollInterval
	}
	if c.QueueSize <= 0 {
		c.QueueSize = 1
	}
	if c.DeadbandType == "" {
		c.DeadbandType = "none"
	}
	if c.Timeout <= 0 {
		c.Timeout = d.Timeout
	}
	if c.MaxItemsPerSubscription <= 0 {
		c.MaxItemsPerSubscription = defaultItemsPerSub
	}
	if c.Watchdog <= 0 {
		c.Watchdog = d.Watchdog
	}
	if c.ReconnectMax <= 0 {
		c.ReconnectMax = d.ReconnectMax
	}
	if c.SecurityPolicy == "" {
		c.SecurityPolicy = d.SecurityPolicy
	}
	if c.Auth == "" {
		c.Auth = "anonymous"
	}
	if c.OnError == "" {
		c.OnError = "bad_quality"
	}
}

// Name returns "opcua:<device>".
func (d *Driver) Name() string { return "opcua:" + d.name }

// fail records an error of a kind.
func (d *Driver) fail(kind string, err error) {
	d.st.setError(err)
	if d.onError != nil {
		d.onError(kind)
	}
}

// errKind wraps an error with the kind of failure it is.
type errKind struct {
	kind string
	err  error
}

func (e *errKind) Error() string { return e.err.Error() }
func (e *errKind) Unwrap() error { return e.err }

func kinded(kind string, err error) error { return &errKind{kind, err} }

// backoffMin is the first wait before a reconnection.
const backoffMin = 500 * time.Millisecond

// Run connects, subscribes or polls, and emits samples until ctx is
// cancelled. When the session fails — server restart, network cut, expired
// session or secure channel, a silent subscription — it emits one sample
// of bad quality per tag (unless on_error is drop), waits a backoff that
// doubles from 500ms to reconnect_max with jitter, and starts again:
// namespaces, browse paths and subscriptions are resolved and created
// anew. Each recovery is counted. Run returns nil when ctx is cancelled;
// every call to the server is bounded by the timeout.
func (d *Driver) Run(ctx context.Context, emit drivers.Emit) error {
	if emit == nil {
		return fmt.Errorf("%s: emit is nil", d.Name())
	}
	if !d.running.CompareAndSwap(false, true) {
		return fmt.Errorf("%s: already running", d.Name())
	}
	defer d.running.Store(false)
	defer d.st.state.Store(int32(StateStopped))
	wait := backoffMin
	failedBefore := false
	lastLogged := ""
	// kinds holds the kind of each tag's last good value, for the zero
	// value of a bad sample.
	r := &runner{d: d, emit: emit, kinds: make([]drivers.Kind, len(d.tags)), good: make([]int8, len(d.tags))}
	for i, t := range d.tags {
		r.kinds[i] = kindOf(t.want)
	}
	for {
		start := time.Now()
		err := r.session(ctx, failedBefore)
		if ctx.Err() != nil {
			return nil
		}
		kind := KindSession
		var ek *errKind
		if errors.As(err, &ek) {
			kind = ek.kind
		}
		d.fail(kind, err)
		d.st.state.Store(int32(StateReconnecting))
		switch {
		case !failedBefore || r.connected:
			d.log.Warn("opcua session failed; reconnecting", "err", err, "kind", kind)
			r.outage(statusOf(err))
		case err.Error() != lastLogged:
			// A new reason (trusted now, but the password is wrong) is
			// worth a warning; the same one again is not.
			d.log.Warn("opcua reconnection failed", "err", err, "kind", kind)
		default:
			d.log.Debug("opcua reconnection failed", "err", err, "kind", kind)
		}
		lastLogged = err.Error()
		if r.connected && time.Since(start) > d.cfg.ReconnectMax.Std() {
			wait = backoffMin
		}
		failedBefore = true
		jit := time.Duration(rand.Int64N(int64(wait)/4 + 1))
		t := time.NewTimer(wait + jit)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
		wait = min(2*wait, d.cfg.ReconnectMax.Std())
	}
}

// statusOf names the status a failure gives the samples of the outage.
func statusOf(err error) string {
	var sc ua.StatusCode
	if errors.As(err, &sc) {
		return StatusName(sc)
	}
	if errors.Is(err, io.EOF) {
		return "BadConnectionClosed"
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return "BadTimeout"
	}
	return "BadCommunicationError"
}

// unresolvedStatus names the status of a tag whose node id or browse path
// did not resolve: the server's own code when it gave one, else
// BadNodeIdUnknown (a namespace URI or browse name it does not have).
func unresolvedStatus(err error) string {
	var sc ua.StatusCode
	if errors.As(err, &sc) {
		return StatusName(sc)
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return "BadTimeout"
	}
	return "BadNodeIdUnknown"
}

// runner is the state of one Run.
type runner struct {
	d     *Driver
	emit  drivers.Emit
	kinds []drivers.Kind
	// good is 1 for a tag whose last sample was good, -1 bad, 0 none yet.
	good []int8
	// warned marks tags whose type problem was logged.
	warned    sync.Map
	connected bool
	// nodes are the node ids the tags resolved to in the current session
	// (nil: not resolved), for the logs.
	nodes []*ua.NodeID
}

// outage emits a bad sample per tag, so the gap shows downstream.
func (r *runner) outage(status string) {
	d := r.d
	if d.cfg.OnError == "drop" {
		for i := range r.good {
			r.setGood(i, false)
		}
		r.d.st.lastStatus.Store("all tags: " + status)
		return
	}
	now := time.Now()
	out := make([]drivers.Sample, len(d.tags))
	for i, t := range d.tags {
		out[i] = drivers.Sample{Device: d.name, Tag: t.name, Value: drivers.NoValue(r.kinds[i]), Quality: drivers.QualityBad, Status: status, ReadTime: now}
		r.setGood(i, false)
	}
	r.d.st.lastStatus.Store("all tags: " + status)
	r.emit(out)
}

// setGood keeps the per-tag good/bad counts current.
func (r *runner) setGood(i int, good bool) {
	v := int8(-1)
	if good {
		v = 1
	}
	old := r.good[i]
	if old == v {
		return
	}
	r.good[i] = v
	switch old {
	case 1:
		r.d.st.itemsGood.Add(-1)
	case -1:
		r.d.st.itemsBad.Add(-1)
	}
	if good {
		r.d.st.itemsGood.Add(1)
	} else {
		r.d.st.itemsBad.Add(1)
	}
}

// sample turns a data value into a sample of tag i.
func (r *runner) sample(i int, dv *ua.DataValue, now time.Time) drivers.Sample {
	t := &r.d.tags[i]
	s := drivers.Sample{Device: r.d.name, Tag: t.name, ReadTime: now}
	status := ua.StatusOK
	if dv != nil && dv.Has(ua.DataValueStatusCode) {
		status = dv.Status
	}
	q, name := Quality(status)
	if dv != nil && dv.Has(ua.DataValueSourceTimestamp) && !dv.SourceTimestamp.IsZero() {
		s.SourceTime = dv.SourceTimestamp
	}
	var v drivers.Value
	var err error
	if dv == nil || dv.Value == nil {
		err = errors.New("no value")
	} else {
		v, err = Convert(dv.Value)
		if err == nil && t.want != 0 && dv.Value.Type() != t.want {
			err = fmt.Errorf("the value is a %s, the config says %s", typeName(dv.Value.Type()), typeName(t.want))
		}
	}
	switch {
	case err != nil && q != drivers.QualityBad:
		if _, loaded := r.warned.LoadOrStore(i, true); !loaded {
			node := t.ref.String()
			if i < len(r.nodes) && r.nodes[i] != nil {
				node = r.nodes[i].String()
			}
			r.d.log.Warn("opcua tag value unusable; its samples are bad (BadTypeMismatch)", "tag", t.name, "node", node, "err", err)
		}
		q, name = drivers.QualityBad, "BadTypeMismatch"
		v = drivers.NoValue(r.kinds[i])
	case q == drivers.QualityBad:
		// A bad value is not a reading: never pass it on as one.
		v = drivers.NoValue(r.kinds[i])
	default:
		r.kinds[i] = v.Kind
	}
	s.Value, s.Quality = v, q
	if name != "BadTypeMismatch" && uint32(status)&0xFFFF0000 == 0 {
		// Plain good (info bits aside): no status in the record.
		name = ""
	}
	s.Status = name
	r.setGood(i, q != drivers.QualityBad)
	if q != drivers.QualityGood {
		r.d.st.lastStatus.Store(t.name + ": " + name)
	}
	return s
}

// call bounds one call to the server by the timeout.
func (r *runner) call(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, r.d.cfg.Timeout.Std())
}

// session runs one connection until it fails or ctx is cancelled.
func (r *runner) session(ctx context.Context, recovering bool) error {
	d := r.d
	r.connected = false
	d.st.state.Store(int32(StateConnecting))
	c, states, stop, err := d.connect(ctx)
	if err != nil {
		return err
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.Background(), d.cfg.Timeout.Std())
		_ = c.Close(cctx)
		cancel()
		stop()
		d.st.subscriptions.Store(0)
	}()
	cctx, cancel := r.call(ctx)
	ns, err := c.NamespaceArray(cctx)
	cancel()
	if err != nil {
		return kinded(KindSession, fmt.Errorf("reading the namespace array: %w", err))
	}
	nodes := make([]*ua.NodeID, len(d.tags))
	var unresolved []drivers.Sample
	for i := range d.tags {
		t := &d.tags[i]
		var err error
		if t.path != nil {
			cctx, cancel := r.call(ctx)
			nodes[i], err = resolvePath(cctx, c, ns, t.path)
			cancel()
		} else {
			nodes[i], err = t.ref.Resolve(ns)
		}
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			d.log.Warn("opcua tag not resolved; its samples are bad until the next connection", "tag", t.name, "err", err)
			nodes[i] = nil
			unresolved = append(unresolved, drivers.Sample{Device: d.name, Tag: t.name, Value: drivers.NoValue(r.kinds[i]), Quality: drivers.QualityBad, Status: unresolvedStatus(err), ReadTime: time.Now()})
			r.setGood(i, false)
		}
	}
	r.nodes = nodes
	r.connected = true
	d.st.state.Store(int32(StateConnected))
	if recovering {
		d.st.recoveries.Add(1)
		d.log.Info("opcua session recovered")
	} else {
		d.log.Info("opcua session established")
	}
	if len(unresolved) > 0 && d.cfg.OnError != "drop" {
		r.emit(unresolved)
	}
	if d.cfg.Mode == "poll" {
		return r.poll(ctx, c, nodes, states)
	}
	return r.subscribe(ctx, c, nodes, states)
}

// connect picks the endpoint, checks the server certificate against the
// trust list and opens a session. The returned stop ends the goroutine
// that watches the connection state; call it after closing the client.
func (d *Driver) connect(ctx context.Context) (*opcua.Client, <-chan opcua.ConnState, func(), error) {
	cfg := &d.cfg
	cctx, cancel := context.WithTimeout(ctx, cfg.Timeout.Std())
	defer cancel()
	eps, err := opcua.GetEndpoints(cctx, cfg.Endpoint, opcua.DialTimeout(cfg.Timeout.Std()), opcua.RequestTimeout(cfg.Timeout.Std()))
	if err != nil {
		return nil, nil, nil, kinded(KindConnect, fmt.Errorf("getting the endpoints of %s: %w", cfg.Endpoint, err))
	}
	pol := policyURI(cfg.SecurityPolicy)
	mode := securityMode(cfg.SecurityPolicy, cfg.SecurityMode)
	var ep *ua.EndpointDescription
	var offered []string
	for _, e := range eps {
		offered = append(offered, fmt.Sprintf("%s/%s", trimPolicy(e.SecurityPolicyURI), e.SecurityMode))
		if e.SecurityPolicyURI == pol && e.SecurityMode == mode && ep == nil {
			ep = e
		}
	}
	if ep == nil {
		return nil, nil, nil, kinded(KindSecurity, fmt.Errorf("%s offers no endpoint with security %s/%s; it offers %v", cfg.Endpoint, cfg.SecurityPolicy, mode, offered))
	}
	tokenType := ua.UserTokenTypeAnonymous
	var opts []opcua.Option
	switch cfg.Auth {
	case "username":
		tokenType = ua.UserTokenTypeUserName
		opts = append(opts, opcua.AuthUsername(cfg.Username, cfg.Password))
	case "certificate":
		tokenType = ua.UserTokenTypeCertificate
		opts = append(opts, opcua.AuthCertificate(d.userCert), opcua.AuthPrivateKey(d.userKey))
	default:
		opts = append(opts, opcua.AuthAnonymous())
	}
	if !offersToken(ep, tokenType) {
		return nil, nil, nil, kinded(KindSecurity, fmt.Errorf("%s does not accept %s users on its %s/%s endpoint", cfg.Endpoint, cfg.Auth, cfg.SecurityPolicy, mode))
	}
	if cfg.SecurityPolicy != "None" {
		pki, err := LoadPKI(d.stateDir, true)
		if err != nil {
			return nil, nil, nil, kinded(KindSecurity, err)
		}
		if err := d.checkServerCert(ep.ServerCertificate); err != nil {
			return nil, nil, nil, kinded(KindSecurity, err)
		}
		opts = append(opts, opcua.Certificate(pki.Cert), opcua.PrivateKey(pki.Key), opcua.ApplicationURI(pki.AppURI))
	}
	states := make(chan opcua.ConnState, 16)
	opts = append(opts,
		opcua.SecurityFromEndpoint(ep, tokenType),
		opcua.ApplicationName("iot-producer"),
		opcua.ProductURI("urn:iot-producer"),
		opcua.SessionName("iot-producer:"+d.name),
		opcua.AutoReconnect(false),
		opcua.RequestTimeout(cfg.Timeout.Std()),
		opcua.DialTimeout(cfg.Timeout.Std()),
		opcua.SessionTimeout(max(time.Minute, 4*cfg.Watchdog.Std())),
		opcua.StateChangedCh(states),
	)
	if d.channelLifetime > 0 {
		opts = append(opts, opcua.Lifetime(d.channelLifetime))
	}
	c, err := opcua.NewClient(cfg.Endpoint, opts...)
	if err != nil {
		return nil, nil, nil, kinded(KindConnect, fmt.Errorf("opcua client: %w", err))
	}
	// The client blocks on state changes until they are read: forward
	// them to a channel that keeps only what matters, until stop.
	lost := make(chan opcua.ConnState, 1)
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-done:
				return
			case s := <-states:
				if s == opcua.Disconnected || s == opcua.Closed {
					select {
					case lost <- s:
					default:
					}
				}
			}
		}
	}()
	stop := func() { close(done); wg.Wait() }
	if err := c.Connect(cctx); err != nil {
		_ = c.Close(context.Background())
		stop()
		return nil, nil, nil, kinded(KindConnect, fmt.Errorf("connecting to %s: %w", cfg.Endpoint, err))
	}
	// Connect's own state changes (Connecting, Connected) are past; a
	// Closed or Disconnected from now on means the connection is lost.
	for len(lost) > 0 {
		<-lost
	}
	return c, lost, stop, nil
}

// trimPolicy returns the name of a policy URI.
func trimPolicy(u string) string {
	if len(u) > len(ua.SecurityPolicyURIPrefix) && u[:len(ua.SecurityPolicyURIPrefix)] == ua.SecurityPolicyURIPrefix {
		return u[len(ua.SecurityPolicyURIPrefix):]
	}
	return u
}

// offersToken reports whether an endpoint accepts a kind of user.
func offersToken(ep *ua.EndpointDescription, t ua.UserTokenType) bool {
	if len(ep.UserIdentityTokens) == 0 {
		return t == ua.UserTokenTypeAnonymous
	}
	for _, p := range ep.UserIdentityTokens {
		if p.TokenType == t {
			return true
		}
	}
	return false
}

// checkServerCert refuses a server certificate not in the trust list,
// unless trust on first use applies.
func (d *Driver) checkServerCert(der []byte) error {
	if len(der) == 0 {
		return fmt.Errorf("%s presents no certificate on a secured endpoint", d.cfg.Endpoint)
	}
	if IsTrusted(d.stateDir, der) {
		return nil
	}
	if d.cfg.TrustOnFirstUse && trustedAny(d.stateDir, d.cfg.Endpoint) && IsTrusted(d.stateDir, der) {
		// Another PLC on this endpoint trusted it a moment ago.
		return nil
	}
	if d.cfg.TrustOnFirstUse && !trustedAny(d.stateDir, d.cfg.Endpoint) {
		p, err := Trust(d.stateDir, der)
		if err != nil {
			return err
		}
		rememberEndpoint(d.stateDir, d.cfg.Endpoint, der)
		d.log.Warn("opcua server certificate trusted on first use", "cert", Describe(der), "file", p)
		return nil
	}
	saved, _ := Reject(d.stateDir, der)
	return &UntrustedError{Endpoint: d.cfg.Endpoint, StateDir: d.stateDir, Cert: der, Saved: saved}
}

// poll reads every node each interval.
func (r *runner) poll(ctx context.Context, c *opcua.Client, nodes []*ua.NodeID, lost <-chan opcua.ConnState) error {
	d := r.d
	per := d.cfg.MaxNodesPerRead
	if per <= 0 {
		per = defaultNodesPerRead
		cctx, cancel := r.call(ctx)
		v, err := c.Node(ua.NewNumericNodeID(0, id.Server_ServerCapabilities_OperationLimits_MaxNodesPerRead)).Value(cctx)
		cancel()
		if err == nil && v != nil {
			if n := int(v.Uint()); n > 0 && n < per {
				per = n
			}
		}
	}
	var idx []int
	var reads []*ua.ReadValueID
	for i, n := range nodes {
		if n != nil {
			idx = append(idx, i)
			reads = append(reads, &ua.ReadValueID{NodeID: n, AttributeID: ua.AttributeIDValue})
		}
	}
	tick := time.NewTicker(d.cfg.PollInterval.Std())
	defer tick.Stop()
	for {
		out := make([]drivers.Sample, 0, len(reads))
		for lo := 0; lo < len(reads); lo += per {
			hi := min(lo+per, len(reads))
			cctx, cancel := r.call(ctx)
			res, err := c.Read(cctx, &ua.ReadRequest{TimestampsToReturn: ua.TimestampsToReturnBoth, NodesToRead: reads[lo:hi]})
			cancel()
			if err == nil && len(res.Results) != hi-lo {
				err = fmt.Errorf("the server answered %d results for %d nodes", len(res.Results), hi-lo)
			}
			if err != nil {
				if len(out) > 0 && ctx.Err() == nil {
					r.emit(out)
				}
				if ctx.Err() != nil {
					return nil
				}
				return kinded(KindRead, fmt.Errorf("reading %d nodes: %w", hi-lo, err))
			}
			rt := time.Now()
			for k, dv := range res.Results {
				out = append(out, r.sample(idx[lo+k], dv, rt))
			}
		}
		if len(out) > 0 {
			r.emit(out)
		}
		d.st.polls.Add(1)
		select {
		case <-ctx.Done():
			return nil
		case s := <-lost:
			return r.lostCause(ctx, c, s)
		case <-tick.C:
		}
	}
}

// subscribe creates the subscriptions and emits their notifications.
func (r *runner) subscribe(ctx context.Context, c *opcua.Client, nodes []*ua.NodeID, lost <-chan opcua.ConnState) error {
	d := r.d
	cfg := &d.cfg
	notif := make(chan *opcua.PublishNotificationData, 64)
	var pending []int
	for i, n := range nodes {
		if n != nil {
			pending = append(pending, i)
		}
	}
	// The keep-alive comes at least every watchdog/3, so the server says
	// it is alive within the watchdog's bound. The server deletes a
	// subscription that got no Publish for its lifetime, and gopcua then
	// pauses publishing without a word (a later probe of the session
	// succeeds): the lifetime, about 3.3 watchdogs, is long enough that a
	// network stall that would let it run out has the watchdog probe the
	// server during the stall first, fail and rebuild the session.
	keep := uint32(max(1, int64(cfg.Watchdog.Std()/3)/int64(cfg.PollInterval.Std())))
	params := &opcua.SubscriptionParameters{Interval: cfg.PollInterval.Std(), MaxKeepAliveCount: keep, LifetimeCount: 10 * keep}
	per := cfg.MaxItemsPerSubscription
	filter := deadbandFilter(cfg)
	subs := 0
	for len(pending) > 0 {
		chunk := pending[:min(per, len(pending))]
		cctx, cancel := r.call(ctx)
		sub, err := c.Subscribe(cctx, params, notif)
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if errors.Is(err, ua.StatusBadTooManySubscriptions) {
				return kinded(KindSubscribe, fmt.Errorf("the server refuses a subscription after %d (max_items_per_subscription %d): %w", subs, per, err))
			}
			return kinded(KindSubscribe, fmt.Errorf("creating a subscription: %w", err))
		}
		subs++
		d.st.subscriptions.Store(int64(subs))
		reqs := make([]*ua.MonitoredItemCreateRequest, len(chunk))
		for k, i := range chunk {
			reqs[k] = r.itemRequest(nodes[i], i, filter)
		}
		cctx, cancel = r.call(ctx)
		res, err := sub.Monitor(cctx, ua.TimestampsToReturnBoth, reqs...)
		cancel()
		if err == nil && len(res.Results) != len(chunk) {
			err = fmt.Errorf("the server answered %d results for %d items", len(res.Results), len(chunk))
		}
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if errors.Is(err, ua.StatusBadTooManyMonitoredItems) && per > 1 {
				per = max(1, per/2)
				d.log.Warn("opcua server refuses that many items in one subscription; splitting", "items_per_subscription", per)
				continue
			}
			return kinded(KindSubscribe, fmt.Errorf("monitoring %d items: %w", len(chunk), err))
		}
		var retry, refused []int
		for k, mr := range res.Results {
			i := chunk[k]
			switch {
			case mr.StatusCode == ua.StatusOK || uint32(mr.StatusCode)>>30 == 0:
			case mr.StatusCode == ua.StatusBadTooManyMonitoredItems:
				retry = append(retry, i)
			case filter != nil && (mr.StatusCode == ua.StatusBadFilterNotAllowed || mr.StatusCode == ua.StatusBadMonitoredItemFilterUnsupported || mr.StatusCode == ua.StatusBadDeadbandFilterInvalid):
				refused = append(refused, i)
			default:
				d.log.Warn("opcua server refuses to monitor a tag; its samples are bad until the next connection", "tag", d.tags[i].name, "status", StatusName(mr.StatusCode))
				if cfg.OnError != "drop" {
					r.emit([]drivers.Sample{{Device: d.name, Tag: d.tags[i].name, Value: drivers.NoValue(r.kinds[i]), Quality: drivers.QualityBad, Status: StatusName(mr.StatusCode), ReadTime: time.Now()}})
				}
				r.setGood(i, false)
			}
		}
		if len(refused) > 0 {
			// The deadband is not supported for these nodes (a percent
			// deadband needs an EURange): monitor every change instead.
			d.log.Warn("opcua server refuses the deadband for some tags; they report every change", "tags", len(refused))
			reqs := make([]*ua.MonitoredItemCreateRequest, len(refused))
			for k, i := range refused {
				reqs[k] = r.itemRequest(nodes[i], i, nil)
			}
			cctx, cancel = r.call(ctx)
			_, err := sub.Monitor(cctx, ua.TimestampsToReturnBoth, reqs...)
			cancel()
			if err != nil {
				return kinded(KindSubscribe, fmt.Errorf("monitoring %d items without deadband: %w", len(refused), err))
			}
		}
		pending = append(retry, pending[len(chunk):]...)
		if len(retry) > 0 {
			per = max(1, len(chunk)-len(retry))
			d.log.Warn("opcua server caps the items of a subscription; splitting", "items_per_subscription", per)
		}
	}
	watchdog := time.NewTimer(cfg.Watchdog.Std())
	defer watchdog.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case s := <-lost:
			return r.lostCause(ctx, c, s)
		case n := <-notif:
			if n.Error != nil {
				return kinded(KindSession, fmt.Errorf("subscription %d: %w", n.SubscriptionID, n.Error))
			}
			switch v := n.Value.(type) {
			case *ua.DataChangeNotification:
				now := time.Now()
				out := make([]drivers.Sample, 0, len(v.MonitoredItems))
				for _, it := range v.MonitoredItems {
					i := int(it.ClientHandle)
					if i < 0 || i >= len(d.tags) {
						continue
					}
					out = append(out, r.sample(i, it.Value, now))
				}
				if len(out) > 0 {
					r.emit(out)
				}
				d.st.notifications.Add(1)
			case *ua.StatusChangeNotification:
				return kinded(KindSession, fmt.Errorf("subscription %d: status %s", n.SubscriptionID, StatusName(v.Status)))
			}
			if !watchdog.Stop() {
				select {
				case <-watchdog.C:
				default:
				}
			}
			watchdog.Reset(cfg.Watchdog.Std())
		case <-watchdog.C:
			// gopcua does not pass keep-alives on: silence may be a quiet
			// plant. Ask the server whether it is still there.
			cctx, cancel := r.call(ctx)
			_, err := c.Node(ua.NewNumericNodeID(0, id.Server_ServerStatus_State)).Value(cctx)
			cancel()
			if err != nil {
				if ctx.Err() != nil {
					return nil
				}
				return kinded(KindSilent, fmt.Errorf("subscriptions silent for %s and the server does not answer: %w", cfg.Watchdog, err))
			}
			d.st.probes.Add(1)
			watchdog.Reset(cfg.Watchdog.Std())
		}
	}
}

// lostCause is the error of a connection the library reports lost. The
// library gives the state, not the reason (a service fault such as
// BadSessionIdInvalid takes the client to Disconnected too): when the
// channel still answers, one probe names the status, so that the outage's
// samples carry it.
func (r *runner) lostCause(ctx context.Context, c *opcua.Client, s opcua.ConnState) error {
	cctx, cancel := r.call(ctx)
	_, err := c.Node(ua.NewNumericNodeID(0, id.Server_ServerStatus_State)).Value(cctx)
	cancel()
	var sc ua.StatusCode
	if err != nil && errors.As(err, &sc) && sc != ua.StatusBadServerNotConnected {
		return kinded(KindSession, fmt.Errorf("connection %s: %w", s, sc))
	}
	return kinded(KindSession, fmt.Errorf("connection %s", s))
}

// itemRequest builds the monitored item of tag i.
func (r *runner) itemRequest(n *ua.NodeID, i int, filter *ua.ExtensionObject) *ua.MonitoredItemCreateRequest {
	cfg := &r.d.cfg
	req := opcua.NewMonitoredItemCreateRequestWithDefaults(n, ua.AttributeIDValue, uint32(i))
	req.RequestedParameters.SamplingInterval = float64(cfg.SamplingInterval.Std()) / float64(time.Millisecond)
	req.RequestedParameters.QueueSize = uint32(cfg.QueueSize)
	req.RequestedParameters.DiscardOldest = true
	if filter != nil {
		req.RequestedParameters.Filter = filter
	}
	return req
}

// deadbandFilter returns the data change filter of the config, nil for
// none.
func deadbandFilter(cfg *Config) *ua.ExtensionObject {
	var t uint32
	switch cfg.DeadbandType {
	case "absolute":
		t = uint32(ua.DeadbandTypeAbsolute)
	case "percent":
		t = uint32(ua.DeadbandTypePercent)
	default:
		return nil
	}
	return ua.NewExtensionObject(&ua.DataChangeFilter{
		Trigger:       ua.DataChangeTriggerStatusValue,
		DeadbandType:  t,
		DeadbandValue: cfg.DeadbandValue,
	})
}
