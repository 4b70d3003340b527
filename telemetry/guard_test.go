package telemetry

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// rawRequest writes req on a new connection to addr and returns the status
// line of the answer and whether the server then closed the connection.
func rawRequest(t *testing.T, addr, req string) (status string, closed bool) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("reading the answer to %q: %v", req, err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	_, err = br.ReadByte()
	var ne net.Error
	return resp.Status, err != nil && !(errorAs(err, &ne) && ne.Timeout())
}

func errorAs(err error, ne *net.Error) bool {
	e, ok := err.(net.Error)
	if ok {
		*ne = e
	}
	return ok
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

func TestBodiesRefused(t *testing.T) {
	s := startServer(t, ServerOptions{Metrics: NewMetrics(), Config: func() any { return 1 }})
	a := s.Addrs()
	for _, tt := range []struct {
		name, addr, req, want string
	}{
		{"POST metrics with a body that never comes", a.Metrics,
			"POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n", "413 Request Entity Too Large"},
		{"chunked body", a.Health,
			"POST /health HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n", "413 Request Entity Too Large"},
		{"GET with a body", a.Health,
			"GET /health HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n", "413 Request Entity Too Large"},
		{"pprof profile with a body", a.Pprof,
			"GET /debug/pprof/cmdline HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n", "413 Request Entity Too Large"},
		{"header over 16 KiB", a.Health,
			"GET /health HTTP/1.1\r\nHost: x\r\nX-Fill: " + strings.Repeat("a", 32<<10) + "\r\n\r\n", "431 Request Header Fields Too Large"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			status, closed := rawRequest(t, tt.addr, tt.req)
			if status != tt.want {
				t.Errorf("status %q, want %q", status, tt.want)
			}
			if !closed {
				t.Error("connection left open after the refusal")
			}
		})
	}
}

func TestPprofBounded(t *testing.T) {
	s := startServer(t, ServerOptions{})
	addr := s.Addrs().Pprof
	for _, tt := range []struct {
		method, path, body string
		want               int
	}{
		{http.MethodGet, "/debug/pprof/cmdline", "", http.StatusOK},
		{http.MethodDelete, "/debug/pprof/cmdline", "", http.StatusMethodNotAllowed},
		{http.MethodPut, "/debug/pprof/heap", "", http.StatusMethodNotAllowed},
		{http.MethodPost, "/debug/pprof/symbol", "0x1", http.StatusOK},
		{http.MethodPost, "/debug/pprof/symbol", strings.Repeat("0x1+", 32<<10), http.StatusOK}, // cut at 64 KiB
	} {
		req, err := http.NewRequest(tt.method, "http://"+addr+tt.path, strings.NewReader(tt.body))
		if err != nil {
			t.Fatal(err)
		}
		resp, err := testClient.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", tt.method, tt.path, err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tt.want {
			t.Errorf("%s %s (%d bytes): %s, want %d", tt.method, tt.path, len(tt.body), resp.Status, tt.want)
		}
	}
}

func TestPprofLoopbackOnly(t *testing.T) {
	for _, tt := range []struct {
		addr    string
		allow   bool
		wantErr bool
	}{
		{"127.0.0.1:0", false, false},
		{"localhost:0", false, false},
		{":0", false, true},
		{"0.0.0.0:0", false, true},
		{"0.0.0.0:0", true, false},
	} {
		s := NewServer(ServerOptions{MetricsAddr: loopbackAny, HealthAddr: loopbackAny, PprofAddr: tt.addr, PprofAllowRemote: tt.allow})
		err := s.Start(context.Background())
		if (err != nil) != tt.wantErr {
			t.Errorf("pprof on %q (allow remote %v): Start = %v, want error %v", tt.addr, tt.allow, err, tt.wantErr)
		}
		_ = s.Shutdown(context.Background())
	}
}

func TestConfigLoopbackOnly(t *testing.T) {
	config := func() any { return map[string]string{"brokers": "kafka:9092"} }
	for _, tt := range []struct {
		remote string
		allow  bool
		want   int
	}{
		{"127.0.0.1:40000", false, http.StatusOK},
		{"[::1]:40000", false, http.StatusOK},
		{"192.0.2.7:40000", false, http.StatusForbidden},
		{"[2001:db8::1]:40000", false, http.StatusForbidden},
		{"192.0.2.7:40000", true, http.StatusOK},
	} {
		r := httptest.NewRequest(http.MethodGet, "/config", nil)
		r.RemoteAddr = tt.remote
		w := httptest.NewRecorder()
		configHandler(config, tt.allow, discardLogger()).ServeHTTP(w, r)
		if w.Code != tt.want {
			t.Errorf("from %s (allow remote %v): %d, want %d", tt.remote, tt.allow, w.Code, tt.want)
		}
		if w.Code != http.StatusOK && strings.Contains(w.Body.String(), "kafka") {
			t.Errorf("refused /config still shows it: %s", w.Body)
		}
	}
	// Over a real loopback connection, as the manual's curl localhost:8080/config.
	s := startServer(t, ServerOptions{Config: config})
	if code, body, _ := get(t, s.Addrs().Metrics, "/config"); code != http.StatusOK || !strings.Contains(string(body), "kafka:9092") {
		t.Errorf("/config over loopback: %d %s", code, body)
	}
}

func TestReadyHidesPathsShowsWarnings(t *testing.T) {
	h := NewHealth()
	h.Set("buffer", StateDown, "open /var/lib/iot-producer/buffer.db: permission denied")
	h.Set("sink/mqtt", StateDegraded, `connect "tcp://plant:s3cret@broker:1883": refused; tls file ./certs/ca.pem`)
	h.Set("source/plc1", StateOK, "opc.tcp://plc:4840/ns=2 polling 5/10 tags")
	h.SetWarnings([]string{"producer.tls.insecure_skip_verify: server certificates are not verified"})
	s := startServer(t, ServerOptions{Health: h})
	code, body, _ := get(t, s.Addrs().Health, "/ready")
	if code != http.StatusServiceUnavailable {
		t.Errorf("status %d, want 503", code)
	}
	var got struct {
		Components []ComponentStatus `json:"components"`
		Warnings   []string          `json:"warnings"`
	}
	if err := json.Unmarshal(body, &got); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"buffer":      "open <path>: permission denied",
		"sink/mqtt":   `connect "tcp://REDACTED@broker:1883": refused; tls file <path>`,
		"source/plc1": "opc.tcp://plc:4840/ns=2 polling 5/10 tags",
	}
	for _, c := range got.Components {
		if c.Detail != want[c.Name] {
			t.Errorf("%s detail %q, want %q", c.Name, c.Detail, want[c.Name])
		}
	}
	if len(got.Warnings) != 1 || !strings.Contains(got.Warnings[0], "insecure_skip_verify") {
		t.Errorf("warnings %q, want the insecure_skip_verify one", got.Warnings)
	}
	if strings.Contains(string(body), "s3cret") || strings.Contains(string(body), "/var/lib") {
		t.Errorf("/ready shows a secret or a path: %s", body)
	}
}

// TestConnLimitShedsOldestIdle fills a listener with idle connections and
// checks that a new request is still answered and the oldest idle
// connection was closed to make room.
func TestConnLimitShedsOldestIdle(t *testing.T) {
	s := startServer(t, ServerOptions{MaxConns: 4})
	addr := s.Addrs().Health
	var idle []net.Conn
	for range 4 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		idle = append(idle, c)
	}
	if code, _, _ := get(t, addr, "/health"); code != http.StatusOK {
		t.Fatalf("/health with the listener full of idle connections: %d", code)
	}
	_ = idle[0].SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := idle[0].Read(make([]byte, 1)); err == nil {
		t.Error("the oldest idle connection got data instead of being closed")
	} else if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Error("the oldest idle connection was not closed to make room")
	}
	for _, ep := range s.endpoints {
		if ep.name == "health" && ep.ln.open() > 4 {
			t.Errorf("health listener holds %d connections, cap 4", ep.ln.open())
		}
	}
}
