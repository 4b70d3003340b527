package telemetry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Default listen addresses, as the operations manual gives them.
const (
	// DefaultMetricsAddr serves /metrics and /config.
	DefaultMetricsAddr = ":8080"
	// DefaultHealthAddr serves /health and /ready.
	DefaultHealthAddr = ":8081"
	// DefaultPprofAddr serves /debug/pprof/; loopback only, because profiles
	// expose the command line and memory contents.
	DefaultPprofAddr = "127.0.0.1:6060"
)

// PprofOff as ServerOptions.PprofAddr disables pprof, like an empty address.
const PprofOff = "off"

// Bounds of the HTTP servers, so that no client can hold memory, a
// descriptor or a goroutine for long: request headers of at most
// maxHeaderBytes arrive within readHeaderTimeout (the whole request within
// DefaultReadTimeout; bodies are refused), a keep-alive connection waits
// idleTimeout for its next request, and each listener keeps at most
// DefaultMaxConns connections (pprofMaxConns for pprof), shedding the
// oldest idle one for a newcomer. A profile or trace runs for as long as the
// client asks (30 s by default) but no longer than pprofWriteTimeout.
const (
	maxHeaderBytes    = 16 << 10
	readHeaderTimeout = 5 * time.Second
	idleTimeout       = 30 * time.Second
	writeTimeout      = 30 * time.Second
	pprofWriteTimeout = 2 * time.Minute
	pprofMaxConns     = 8
)

// DefaultReadTimeout bounds the time to read a whole request.
const DefaultReadTimeout = 10 * time.Second

// DefaultMaxConns is the number of connections each of the metrics and
// health listeners keeps open at most.
const DefaultMaxConns = 256

// ServerOptions configures a Server. The zero value serves /health and /ready
// on the default ports, with pprof off.
type ServerOptions struct {
	// MetricsAddr is the listen address of /metrics and /config; empty means
	// DefaultMetricsAddr. A port of 0 picks a free port (see Server.Addrs).
	MetricsAddr string
	// HealthAddr is the listen address of /health and /ready; empty means
	// DefaultHealthAddr.
	HealthAddr string
	// PprofAddr is the listen address of /debug/pprof/; empty or PprofOff
	// disables pprof. The agent's configuration defaults it to
	// DefaultPprofAddr.
	PprofAddr string
	// Metrics is served on /metrics; nil leaves /metrics unserved (404).
	Metrics *Metrics
	// Health is served on /ready; nil means an empty Health, never ready.
	Health *Health
	// Config returns the effective configuration, already redacted, for
	// /config; it is called on every request and must be safe for
	// concurrent use. Nil leaves /config unserved (404).
	Config func() any
	// Logger receives the servers' errors; nil discards them.
	Logger *slog.Logger

	// ConfigAllowRemote serves /config to any client; by default only
	// loopback clients get it (403 for others), since it shows the PLCs,
	// the brokers and user names.
	ConfigAllowRemote bool
	// PprofAllowRemote lets PprofAddr be other than a loopback address;
	// by default Start refuses one.
	PprofAllowRemote bool
	// ReadTimeout bounds the reading of a request (and of its headers);
	// zero means DefaultReadTimeout.
	ReadTimeout time.Duration
	// MaxConns caps the connections of the metrics and health listeners
	// each; zero means DefaultMaxConns. pprof keeps at most 8.
	MaxConns int
}

// ListenAddrs are the addresses a started Server actually listens on.
type ListenAddrs struct {
	// Metrics serves /metrics and /config.
	Metrics string
	// Health serves /health and /ready.
	Health string
	// Pprof serves /debug/pprof/; empty when pprof is off.
	Pprof string
}

// endpoint is one listener and the HTTP server on it.
type endpoint struct {
	name         string // "metrics", "health" or "pprof", for errors and logs
	addr         string // configured address
	handler      http.Handler
	bodyOK       func(*http.Request) bool // requests that may carry a (bounded) body
	writeTimeout time.Duration
	maxConns     int
	ln           *connLimitListener // set by Start
	srv          *http.Server       // set by Start
}

// Server serves the telemetry endpoints on up to three listeners. Build it
// with NewServer, then Start it once and Shutdown it once.
type Server struct {
	log         *slog.Logger
	endpoints   []*endpoint // metrics, health, then pprof if enabled
	readTimeout time.Duration
	// pprofRemote allows a non-loopback pprof address.
	pprofRemote bool

	mu      sync.Mutex
	started bool
	stopped bool
	wg      sync.WaitGroup // one per Serve goroutine
}

// NewServer builds a Server from opts, applying the defaults documented on
// ServerOptions. It binds nothing: Start does.
func NewServer(opts ServerOptions) *Server {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if opts.MetricsAddr == "" {
		opts.MetricsAddr = DefaultMetricsAddr
	}
	if opts.HealthAddr == "" {
		opts.HealthAddr = DefaultHealthAddr
	}
	if opts.Health == nil {
		opts.Health = NewHealth()
	}
	if opts.ReadTimeout <= 0 {
		opts.ReadTimeout = DefaultReadTimeout
	}
	if opts.MaxConns <= 0 {
		opts.MaxConns = DefaultMaxConns
	}
	s := &Server{log: log, readTimeout: opts.ReadTimeout, pprofRemote: opts.PprofAllowRemote}

	metricsMux := http.NewServeMux()
	if opts.Metrics != nil {
		metricsMux.Handle("GET /metrics", promhttp.HandlerFor(opts.Metrics.Registry(), promhttp.HandlerOpts{
			ErrorLog:      promLogger{log},
			ErrorHandling: promhttp.ContinueOnError,
		}))
	}
	if opts.Config != nil {
		metricsMux.Handle("GET /config", configHandler(opts.Config, opts.ConfigAllowRemote, log))
	}
	s.endpoints = append(s.endpoints, &endpoint{
		name: "metrics", addr: opts.MetricsAddr, handler: metricsMux,
		writeTimeout: writeTimeout, maxConns: opts.MaxConns,
	})

	healthMux := http.NewServeMux()
	healthMux.HandleFunc("GET /health", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "alive"}, log)
	})
	healthMux.Handle("GET /ready", readyHandler(opts.Health, log))
	s.endpoints = append(s.endpoints, &endpoint{
		name: "health", addr: opts.HealthAddr, handler: healthMux,
		writeTimeout: writeTimeout, maxConns: opts.MaxConns,
	})

	if opts.PprofAddr != "" && opts.PprofAddr != PprofOff {
		s.endpoints = append(s.endpoints, &endpoint{
			name: "pprof", addr: opts.PprofAddr, handler: pprofMux(),
			bodyOK: func(r *http.Request) bool {
				return r.Method == http.MethodPost && r.URL.Path == "/debug/pprof/symbol"
			},
			writeTimeout: pprofWriteTimeout, maxConns: pprofMaxConns,
		})
	}
	return s
}

// Start binds every listener, then serves each in its own goroutine until
// Shutdown. ctx bounds the binding only. If a listener cannot be bound,
// Start closes those already bound and returns an error naming the
// endpoint and address. Start may be called once; it fails after Shutdown.
func (s *Server) Start(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.stopped:
		return errors.New("telemetry: start: server already shut down")
	case s.started:
		return errors.New("telemetry: start: server already started")
	}
	if err := s.checkDistinctAddrs(); err != nil {
		return err
	}
	for _, ep := range s.endpoints {
		if ep.name == "pprof" && !s.pprofRemote && !loopbackAddr(ep.addr) {
			return fmt.Errorf("telemetry: pprof on %q: not a loopback address (profiles show memory contents and the command line); allow it explicitly", ep.addr)
		}
	}

	var lc net.ListenConfig
	for i, ep := range s.endpoints {
		ln, err := lc.Listen(ctx, "tcp", ep.addr)
		if err != nil {
			for _, bound := range s.endpoints[:i] {
				_ = bound.ln.Close() // never served: nothing to lose
				bound.ln = nil
			}
			return fmt.Errorf("telemetry: listen for %s on %q: %w", ep.name, ep.addr, err)
		}
		ep.ln = newConnLimitListener(ln, ep.name, ep.maxConns, s.log)
	}

	for _, ep := range s.endpoints {
		ep.srv = &http.Server{
			Handler:           guard(ep.handler, ep.bodyOK),
			ReadHeaderTimeout: min(readHeaderTimeout, s.readTimeout),
			ReadTimeout:       s.readTimeout,
			WriteTimeout:      ep.writeTimeout,
			IdleTimeout:       idleTimeout,
			MaxHeaderBytes:    maxHeaderBytes,
			ConnContext:       withConn,
			ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
		}
		s.wg.Go(func() {
			if err := ep.srv.Serve(ep.ln); !errors.Is(err, http.ErrServerClosed) {
				s.log.Error("telemetry endpoint stopped serving",
					"endpoint", ep.name, "addr", ep.ln.Addr().String(), "error", err)
			}
		})
		s.log.Info("telemetry endpoint listening", "endpoint", ep.name, "addr", ep.ln.Addr().String())
	}
	s.started = true
	return nil
}

// checkDistinctAddrs rejects two endpoints configured on the same fixed
// address, with a clearer message than the bind error it would cause.
func (s *Server) checkDistinctAddrs() error {
	seen := make(map[string]string, len(s.endpoints))
	for _, ep := range s.endpoints {
		if _, port, err := net.SplitHostPort(ep.addr); err == nil && port == "0" {
			continue // each gets its own free port
		}
		if other, ok := seen[ep.addr]; ok {
			return fmt.Errorf("telemetry: %s and %s are both configured on %q", other, ep.name, ep.addr)
		}
		seen[ep.addr] = ep.name
	}
	return nil
}

// Addrs returns the addresses the server listens on: the actual ones, with
// the port chosen for a ":0" address. All are empty before Start.
func (s *Server) Addrs() ListenAddrs {
	s.mu.Lock()
	defer s.mu.Unlock()
	var a ListenAddrs
	for _, ep := range s.endpoints {
		if ep.ln == nil {
			continue
		}
		addr := ep.ln.Addr().String()
		switch ep.name {
		case "metrics":
			a.Metrics = addr
		case "health":
			a.Health = addr
		case "pprof":
			a.Pprof = addr
		}
	}
	return a
}

// Shutdown stops accepting connections, waits for requests in progress to
// finish until ctx is done, then closes what remains and waits for the
// serving goroutines to return. It returns ctx's error (wrapped) if requests
// had to be cut off. It is safe to call before Start and more than once;
// the server cannot be started again.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped || !s.started {
		s.stopped = true
		return nil
	}
	s.stopped = true

	var errs []error
	for _, ep := range s.endpoints {
		if err := ep.srv.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("telemetry: shut down %s on %s: %w", ep.name, ep.ln.Addr(), err))
			_ = ep.srv.Close() // cut off what did not finish in time
		}
	}
	s.wg.Wait()
	return errors.Join(errs...)
}

// readyHandler answers 200 when h is ready and 503 otherwise, with the
// state of every component (details without file paths or URL
// credentials) and the configuration's security warnings, if any.
func readyHandler(h *Health, log *slog.Logger) http.Handler {
	type body struct {
		Status     string            `json:"status"`
		Components []ComponentStatus `json:"components"`
		Warnings   []string          `json:"warnings,omitempty"`
	}
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		ready, comps := h.status()
		for i := range comps {
			comps[i].Detail = scrubDetail(comps[i].Detail)
		}
		b := body{Status: "not ready", Components: comps, Warnings: h.Warnings()}
		status := http.StatusServiceUnavailable
		if ready {
			b.Status, status = "ready", http.StatusOK
		}
		writeJSON(w, status, b, log)
	})
}

// configHandler serves the JSON encoding of config(), to loopback clients
// only unless allowRemote.
func configHandler(config func() any, allowRemote bool, log *slog.Logger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !allowRemote && !remoteIsLoopback(r) {
			http.Error(w, "/config answers loopback clients only (telemetry.config_allow_remote)", http.StatusForbidden)
			return
		}
		writeJSON(w, http.StatusOK, config(), log)
	})
}

// writeJSON encodes v before writing anything, so an encoding failure
// becomes a clean 500 instead of a truncated body.
func writeJSON(w http.ResponseWriter, status int, v any, log *slog.Logger) {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		log.Error("telemetry: encoding JSON response", "error", err)
		http.Error(w, "encoding response failed", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n')) // a client that went away is not an error here
}

// pprofMux serves net/http/pprof's handlers on a private mux: the package's
// own registration on http.DefaultServeMux is never served.
// Only GET (and HEAD) are served, and POST for the symbol lookup of
// `go tool pprof`, whose body guard bounds.
func pprofMux() *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /debug/pprof/", pprof.Index) // heap, goroutine, allocs, block, mutex, ...
	mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("POST /debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	return mux
}

// promLogger adapts slog to promhttp.Logger.
type promLogger struct{ log *slog.Logger }

// Println logs promhttp's message at error level.
func (l promLogger) Println(v ...any) {
	l.log.Error("telemetry: serving /metrics", "error", strings.TrimSuffix(fmt.Sprintln(v...), "\n"))
}
