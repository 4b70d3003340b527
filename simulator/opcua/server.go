// Package opcua owns the simulator's OPC UA server: simulated devices are
// folders under the Objects folder and their tags are variables whose
// values follow the signal models, pushed to subscribers as they change.
// It serves the security policies None, Basic256Sha256,
// Aes128_Sha256_RsaOaep and Aes256_Sha256_RsaPss (Sign and SignAndEncrypt)
// with a certificate of its own, through gopcua's server package.
//
// gopcua's server samples nothing by itself and accepts any user name and
// password: the simulator sets values and sends the change notifications
// itself, and must not be used to prove authentication.
//
// gopcua v0.8.0's server cannot open a secured channel by itself: every
// channel starts with security mode None and the OpenSecureChannel request
// that would set the real mode is decoded without being decrypted (the
// details, with the library's lines, are in secure.go). Clients connect to
// a front that relays every connection to gopcua's server (so that Close
// can cut them all at once, and Stall can hold them); the front holds the
// server's key, decrypts that one request and checks its signature, and
// gopcua does the rest: every later message is signed, and encrypted with
// SignAndEncrypt, between the client and gopcua's server.
//
// It knows the signal models and the drivers.Value model; nothing of the
// agent or its config file.
package opcua

import (
	"context"
	"crypto/rsa"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/gopcua/opcua/id"
	"github.com/gopcua/opcua/server"
	"github.com/gopcua/opcua/server/attrs"
	"github.com/gopcua/opcua/ua"

	"github.com/iot-producer/iot-producer/drivers"
	drv "github.com/iot-producer/iot-producer/drivers/opcua"
	"github.com/iot-producer/iot-producer/simulator/signal"
)

// DefaultNamespaceURI is the URI of the simulator's namespace.
const DefaultNamespaceURI = "urn:iot-producer:simulator"

// Options configures a Server.
type Options struct {
	// Host and Port are where the server listens and what its endpoint
	// URL says; Host defaults to 127.0.0.1, Port 0 picks a free port.
	Host string
	Port int
	// Devices × TagsPerDevice simulated tags, as the in-process simulator:
	// devices <prefix>-0001..., tags temperature, pressure, counter...
	Devices       int
	TagsPerDevice int
	NamePrefix    string
	// Interval is the time between updates of the signals; default 1s.
	Interval  time.Duration
	Seed      int64
	Variation float64
	// NamespaceURI names the simulator's namespace; default
	// DefaultNamespaceURI. ExtraNamespaces adds namespaces before it, so
	// that its index is not 2 (to prove configs that name it by URI).
	NamespaceURI    string
	ExtraNamespaces int
	// Types adds a device "types" with one variable of every scalar type
	// (see TypeValues).
	Types bool
	// Secure serves the secured endpoints (Basic256Sha256,
	// Aes128_Sha256_RsaOaep, Aes256_Sha256_RsaPss; Sign and
	// SignAndEncrypt) besides None.
	Secure bool
	// Cert and Key are the server's certificate (DER) and key; generated
	// when nil.
	Cert []byte
	Key  *rsa.PrivateKey
	// Logger receives the simulator's own messages.
	Logger *slog.Logger
}

// variable is one simulated tag.
type variable struct {
	node   *ua.NodeID
	key    string
	model  signal.Model
	dv     atomic.Pointer[ua.DataValue]
	status ua.StatusCode
}

// Server is a running OPC UA simulator.
type Server struct {
	opts   Options
	srv    *server.Server
	ns     *server.NodeNameSpace
	nsIdx  uint16
	url    string
	cert   []byte
	vars   []*variable
	byName map[string]*variable
	cancel context.CancelFunc
	wg     sync.WaitGroup
	mu     sync.Mutex // guards status changes and conns
	// inner is where gopcua's server listens; front accepts on the
	// endpoint's address and relays, so that Close can drop every
	// connection at once as a dying server does (gopcua's Close leaves
	// them open and waits up to 10s for them).
	inner string
	front net.Listener
	conns map[net.Conn]struct{}
	// stalled holds every byte back (Stall); flow signals its end and
	// closing.
	stalled, closing bool
	flow             *sync.Cond
	// dropped counts change notifications a full subscriber queue refused.
	dropped atomic.Uint64
	// secured counts the secured channels opened (openSecured); opens
	// every OpenSecureChannel request, renewals included.
	secured, opens atomic.Uint64
}

// New builds the address space and the server; Start serves. With Port 0
// New already listens on the port it picks (so that it stays free for the
// server): Start or Close must follow.
func New(opts Options) (*Server, error) {
	if opts.Host == "" {
		opts.Host = "127.0.0.1"
	}
	if opts.Interval <= 0 {
		opts.Interval = time.Second
	}
	if opts.NamespaceURI == "" {
		opts.NamespaceURI = DefaultNamespaceURI
	}
	if opts.NamePrefix == "" {
		opts.NamePrefix = "sim"
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Devices < 0 || opts.TagsPerDevice < 0 || (opts.Devices > 0 && opts.TagsPerDevice == 0) {
		return nil, fmt.Errorf("opcua simulator: %d devices × %d tags", opts.Devices, opts.TagsPerDevice)
	}
	if opts.Cert == nil || opts.Key == nil {
		der, key, err := drv.NewCertificate("iot-producer simulator", "urn:iot-producer:simulator:"+opts.Host, []string{opts.Host, "localhost"}, 10*365*24*time.Hour)
		if err != nil {
			return nil, err
		}
		opts.Cert, opts.Key = der, key
	}
	s := &Server{conns: map[net.Conn]struct{}{}, cert: opts.Cert}
	if opts.Port == 0 {
		// Listen now, so that the port picked stays ours.
		l, err := net.Listen("tcp", net.JoinHostPort(opts.Host, "0"))
		if err != nil {
			return nil, fmt.Errorf("opcua simulator: listening on %s: %w", opts.Host, err)
		}
		s.front = l
		opts.Port = l.Addr().(*net.TCPAddr).Port
	}
	s.opts = opts
	s.flow = sync.NewCond(&s.mu)
	s.url = fmt.Sprintf("opc.tcp://%s:%d", opts.Host, opts.Port)
	if err := s.build(); err != nil {
		if s.front != nil {
			_ = s.front.Close()
		}
		return nil, err
	}
	return s, nil
}

// build makes gopcua's server, listening on a free loopback port of its
// own behind the front, and the address space.
func (s *Server) build() error {
	opts := s.opts
	inner, err := freePort("127.0.0.1")
	if err != nil {
		return err
	}
	s.inner = fmt.Sprintf("127.0.0.1:%d", inner)
	s.vars, s.byName = nil, map[string]*variable{}
	sopts := []server.Option{
		// gopcua listens on its first endpoint: the inner one, behind the
		// front that Close can cut (see Start).
		server.EndPoint("127.0.0.1", inner),
		server.EndPoint(opts.Host, opts.Port),
		server.ServerName("iot-producer simulator"),
		server.ProductName("iot-producer simulator"),
		server.ManufacturerName("iot-producer"),
		server.Certificate(opts.Cert),
		server.PrivateKey(opts.Key),
		server.EnableAuthMode(ua.UserTokenTypeAnonymous),
		server.EnableAuthMode(ua.UserTokenTypeUserName),
		server.EnableAuthMode(ua.UserTokenTypeCertificate),
		server.SetLogger(quietLogger{opts.Logger}),
	}
	sopts = append(sopts, server.EnableSecurity("None", ua.MessageSecurityModeNone))
	if opts.Secure {
		for _, p := range []string{"Basic256Sha256", "Aes128_Sha256_RsaOaep", "Aes256_Sha256_RsaPss"} {
			sopts = append(sopts,
				server.EnableSecurity(p, ua.MessageSecurityModeSignAndEncrypt),
				server.EnableSecurity(p, ua.MessageSecurityModeSign))
		}
	}
	s.srv = server.New(sopts...)
	for i := range opts.ExtraNamespaces {
		server.NewNodeNameSpace(s.srv, "urn:iot-producer:simulator:spare:"+strconv.Itoa(i+1))
	}
	s.ns = server.NewNodeNameSpace(s.srv, opts.NamespaceURI)
	s.nsIdx = s.ns.ID()
	root, err := s.srv.Namespace(0)
	if err != nil {
		return err
	}
	objects := root.Objects()
	for d := range opts.Devices {
		dev := fmt.Sprintf("%s-%04d", opts.NamePrefix, d+1)
		folder := s.folder(objects, dev)
		for t := range opts.TagsPerDevice {
			p := signal.TagProfile(t)
			m := signal.NewSeries(opts.Seed, d, t, opts.Variation)
			v := s.variable(folder, dev, p.Name, m.Next(time.Now()))
			v.model = m
		}
	}
	if opts.Types {
		folder := s.folder(objects, "types")
		for _, tv := range TypeValues() {
			s.variableRaw(folder, "types", tv.Name, tv.Value)
		}
	}
	return nil
}

// folder adds a device folder under the Objects folder.
func (s *Server) folder(objects *server.Node, name string) *server.Node {
	// gopcua's NewFolderNode panics (its description is a NodeClass).
	n := server.NewNode(ua.NewStringNodeID(s.nsIdx, name), map[ua.AttributeID]*ua.DataValue{
		ua.AttributeIDNodeClass:     server.DataValueFromValue(uint32(ua.NodeClassObject)),
		ua.AttributeIDBrowseName:    server.DataValueFromValue(&ua.QualifiedName{NamespaceIndex: s.nsIdx, Name: name}),
		ua.AttributeIDDisplayName:   server.DataValueFromValue(attrs.DisplayName(name, "")),
		ua.AttributeIDEventNotifier: server.DataValueFromValue(int16(0)),
	}, []*ua.ReferenceDescription{{
		ReferenceTypeID: ua.NewNumericNodeID(0, id.HasTypeDefinition),
		IsForward:       true,
		NodeID:          ua.NewNumericExpandedNodeID(0, id.FolderType),
		BrowseName:      &ua.QualifiedName{Name: "FolderType"},
		DisplayName:     attrs.DisplayName("FolderType", ""),
		NodeClass:       ua.NodeClassObjectType,
		TypeDefinition:  ua.NewNumericExpandedNodeID(0, 0),
	}}, nil)
	s.ns.AddNode(n)
	objects.AddRef(n, id.Organizes, true)
	return n
}

// NodeID returns the node id of a tag in the ns=<index> notation.
func (s *Server) NodeID(device, tag string) string {
	return "ns=" + strconv.Itoa(int(s.nsIdx)) + ";s=" + device + "." + tag
}

// NodeURI returns the node id of a tag in the nsu=<uri> notation.
func (s *Server) NodeURI(device, tag string) string {
	return "nsu=" + s.opts.NamespaceURI + ";s=" + device + "." + tag
}

// variable adds a tag whose value is a drivers.Value.
func (s *Server) variable(folder *server.Node, dev, tag string, v drivers.Value) *variable {
	return s.variableRaw(folder, dev, tag, variantOf(v))
}

// variantOf maps a simulated value to its OPC UA scalar.
func variantOf(v drivers.Value) any {
	switch v.Kind {
	case drivers.KindInt:
		return v.I
	case drivers.KindUint:
		return v.U
	case drivers.KindBool:
		return v.B
	case drivers.KindString:
		return v.S
	}
	return v.F
}

// variableRaw adds a tag with an OPC UA value.
func (s *Server) variableRaw(folder *server.Node, dev, tag string, val any) *variable {
	nid := ua.NewStringNodeID(s.nsIdx, dev+"."+tag)
	v := &variable{node: nid, key: nid.String()}
	variant := ua.MustVariant(val)
	v.dv.Store(dataValue(variant, ua.StatusOK, time.Now()))
	dt := ua.NewNumericExpandedNodeID(0, uint32(variant.Type()))
	n := server.NewNode(nid, map[ua.AttributeID]*ua.DataValue{
		ua.AttributeIDNodeClass:       server.DataValueFromValue(uint32(ua.NodeClassVariable)),
		ua.AttributeIDBrowseName:      server.DataValueFromValue(&ua.QualifiedName{NamespaceIndex: s.nsIdx, Name: tag}),
		ua.AttributeIDDisplayName:     server.DataValueFromValue(attrs.DisplayName(tag, "")),
		ua.AttributeIDDataType:        server.DataValueFromValue(dt),
		ua.AttributeIDAccessLevel:     server.DataValueFromValue(byte(ua.AccessLevelTypeCurrentRead)),
		ua.AttributeIDUserAccessLevel: server.DataValueFromValue(byte(ua.AccessLevelTypeCurrentRead)),
		ua.AttributeIDValueRank:       server.DataValueFromValue(int32(-1)),
	}, nil, func() *ua.DataValue { return v.dv.Load() })
	s.ns.AddNode(n)
	folder.AddRef(n, id.HasComponent, true)
	s.vars = append(s.vars, v)
	s.byName[dev+"."+tag] = v
	return v
}

// dataValue builds a data value with its status and both time stamps.
func dataValue(v *ua.Variant, st ua.StatusCode, t time.Time) *ua.DataValue {
	return &ua.DataValue{
		EncodingMask:    ua.DataValueValue | ua.DataValueStatusCode | ua.DataValueSourceTimestamp | ua.DataValueServerTimestamp,
		Value:           v,
		Status:          st,
		SourceTimestamp: t,
		ServerTimestamp: t,
	}
}

// Start listens and starts updating the signals every interval until
// Close.
func (s *Server) Start(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	s.cancel = cancel
	if s.front == nil {
		l, err := net.Listen("tcp", net.JoinHostPort(s.opts.Host, strconv.Itoa(s.opts.Port)))
		if err != nil {
			cancel()
			return fmt.Errorf("opcua simulator: listening on %s: %w", s.url, err)
		}
		s.front = l
	}
	// gopcua's server listens on the port build picked; another process
	// may have taken it since (gopcua cannot be given a listener): build
	// again on another.
	for attempt := 1; ; attempt++ {
		err := s.srv.Start(ctx)
		if err == nil {
			break
		}
		if attempt < 5 && (errors.Is(err, syscall.EADDRINUSE) || strings.Contains(err.Error(), "address already in use")) {
			if err = s.build(); err == nil {
				continue
			}
		}
		cancel()
		_ = s.front.Close()
		return fmt.Errorf("opcua simulator: starting the server: %w", err)
	}
	s.wg.Add(1)
	go s.accept(ctx)
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		t := time.NewTicker(s.opts.Interval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case now := <-t.C:
				s.Update(now)
			}
		}
	}()
	s.opts.Logger.Info("opcua simulator listening", "endpoint", s.url, "namespace", s.opts.NamespaceURI, "index", s.nsIdx, "variables", len(s.vars))
	return nil
}

// Update advances every signal to t and notifies the subscribers. A
// subscriber that does not take its notifications within half an interval
// misses the rest of this update (counted in Dropped).
func (s *Server) Update(t time.Time) {
	giveUp := make(chan struct{})
	stop := time.AfterFunc(s.opts.Interval/2, func() { close(giveUp) })
	defer stop.Stop()
	for _, v := range s.vars {
		if v.model == nil {
			continue
		}
		s.mu.Lock()
		st := v.status
		s.mu.Unlock()
		v.dv.Store(dataValue(ua.MustVariant(variantOf(v.model.Next(t))), st, t))
		s.notify(v, giveUp)
	}
}

// Set gives a tag a value (an OPC UA scalar: int32, float32, time.Time...)
// and status, time stamped now, and notifies the subscribers.
func (s *Server) Set(device, tag string, val any, status ua.StatusCode) error {
	v := s.byName[device+"."+tag]
	if v == nil {
		return fmt.Errorf("opcua simulator: no tag %s.%s", device, tag)
	}
	variant, err := ua.NewVariant(val)
	if err != nil {
		return fmt.Errorf("opcua simulator: %s.%s: %w", device, tag, err)
	}
	s.mu.Lock()
	v.status = status
	s.mu.Unlock()
	v.dv.Store(dataValue(variant, status, time.Now()))
	giveUp := make(chan struct{})
	stop := time.AfterFunc(time.Second, func() { close(giveUp) })
	defer stop.Stop()
	s.notify(v, giveUp)
	return nil
}

// notify hands the variable's value to every monitored item on it, waiting
// for a full queue until giveUp is closed. gopcua's own ChangeNotification
// blocks on a full queue while holding the item lock, which stalls the
// server for good when a subscription has died; here the lock is held only
// to list the items. A notification given up is counted.
func (s *Server) notify(v *variable, giveUp <-chan struct{}) {
	mis := s.srv.MonitoredItemService
	if mis == nil {
		return
	}
	dv := v.dv.Load()
	mis.Mu.Lock()
	items := append([]*server.MonitoredItem(nil), mis.Nodes[v.key]...)
	mis.Mu.Unlock()
	for _, it := range items {
		if it == nil || it.Sub == nil || it.Req == nil {
			continue
		}
		n := &ua.MonitoredItemNotification{ClientHandle: it.Req.RequestedParameters.ClientHandle, Value: dv}
		select {
		case it.Sub.NotifyChannel <- n:
		default:
			select {
			case it.Sub.NotifyChannel <- n:
			case <-giveUp:
				s.dropped.Add(1)
			}
		}
	}
}

// Endpoint returns the server's URL, opc.tcp://host:port.
func (s *Server) Endpoint() string { return s.url }

// Certificate returns the server's certificate (DER).
func (s *Server) Certificate() []byte { return s.cert }

// Key returns the server's private key, to restart with the same identity.
func (s *Server) Key() *rsa.PrivateKey { return s.opts.Key }

// Port returns the port the server listens on.
func (s *Server) Port() int { return s.opts.Port }

// NamespaceIndex returns the index of the simulator's namespace.
func (s *Server) NamespaceIndex() uint16 { return s.nsIdx }

// Variables returns the number of variables served.
func (s *Server) Variables() int { return len(s.vars) }

// Dropped returns the change notifications refused by full queues.
func (s *Server) Dropped() uint64 { return s.dropped.Load() }

// SecuredChannels returns the number of secure channels opened with a
// policy other than None (renewals included).
func (s *Server) SecuredChannels() uint64 { return s.secured.Load() }

// OpenRequests returns the number of OpenSecureChannel requests received,
// to open a channel or to renew its token, whatever the policy.
func (s *Server) OpenRequests() uint64 { return s.opens.Load() }

// Close stops the updates and the server and closes every connection.
func (s *Server) Close() error {
	if s.cancel == nil {
		if s.front != nil {
			_ = s.front.Close()
		}
		return errors.New("opcua simulator: not started")
	}
	s.cancel()
	_ = s.front.Close()
	s.mu.Lock()
	s.closing = true
	s.flow.Broadcast()
	for c := range s.conns {
		_ = c.Close()
	}
	s.mu.Unlock()
	err := s.srv.Close()
	// gopcua's Close leaves each subscription's goroutine running until
	// its lifetime runs out: end them.
	if ss := s.srv.SubscriptionService; ss != nil {
		ss.Mu.Lock()
		ids := make([]uint32, 0, len(ss.Subs))
		for id := range ss.Subs {
			ids = append(ids, id)
		}
		ss.Mu.Unlock()
		for _, id := range ids {
			ss.DeleteSubscription(id)
		}
	}
	s.wg.Wait()
	return err
}

// freePort returns a port free on host now.
func freePort(host string) (int, error) {
	l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return 0, fmt.Errorf("opcua simulator: finding a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// accept relays each connection on the endpoint's address to gopcua's
// server.
func (s *Server) accept(ctx context.Context) {
	defer s.wg.Done()
	for {
		c, err := s.front.Accept()
		if err != nil {
			return
		}
		var d net.Dialer
		in, err := d.DialContext(ctx, "tcp", s.inner)
		if err != nil {
			_ = c.Close()
			continue
		}
		s.mu.Lock()
		if ctx.Err() != nil {
			s.mu.Unlock()
			_ = c.Close()
			_ = in.Close()
			return
		}
		s.conns[c], s.conns[in] = struct{}{}, struct{}{}
		s.mu.Unlock()
		s.wg.Add(2)
		go s.relay(c, in)
		go s.relayFrames(in, c)
	}
}

// Stall cuts the network between the clients and the server without
// closing anything, as a pulled cable or a dead switch does: while on,
// bytes in either direction are held back (new connections are accepted
// and get no answer). Off lets them flow again.
func (s *Server) Stall(on bool) {
	s.mu.Lock()
	s.stalled = on
	s.mu.Unlock()
	s.flow.Broadcast()
}

// flowing waits while the network is stalled; false once the server is
// closing.
func (s *Server) flowing() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for s.stalled && !s.closing {
		s.flow.Wait()
	}
	return !s.closing
}

// relay copies src to dst, then closes both.
func (s *Server) relay(dst, src net.Conn) {
	defer s.wg.Done()
	buf := make([]byte, 64<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if !s.flowing() {
				break
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				break
			}
		}
		if err != nil {
			break
		}
	}
	s.closePair(dst, src)
}

// closePair closes both ends of a relay and forgets them.
func (s *Server) closePair(dst, src net.Conn) {
	_ = dst.Close()
	_ = src.Close()
	s.mu.Lock()
	delete(s.conns, dst)
	delete(s.conns, src)
	s.mu.Unlock()
}

// quietLogger passes gopcua's server messages to slog at debug level:
// its info messages are per request.
type quietLogger struct{ l *slog.Logger }

func (q quietLogger) Debug(msg string, args ...any) {}
func (q quietLogger) Info(msg string, args ...any)  {}
func (q quietLogger) Warn(msg string, args ...any) {
	q.l.Debug("gopcua server: " + fmt.Sprintf(msg, args...))
}
func (q quietLogger) Error(msg string, args ...any) {
	q.l.Debug("gopcua server: " + fmt.Sprintf(msg, args...))
}
