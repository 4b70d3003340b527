package telemetry

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	if os.Getenv(hostileServerEnv) == "1" {
		os.Exit(runHostileServer())
	}
	goleak.VerifyTestMain(m)
}

// loopbackAny asks the kernel for a free loopback port.
const loopbackAny = "127.0.0.1:0"

// startServer starts a Server on free loopback ports (for addresses left
// empty in opts, pprof included) and shuts it down at the end of the test.
func startServer(t *testing.T, opts ServerOptions) *Server {
	t.Helper()
	for _, a := range []*string{&opts.MetricsAddr, &opts.HealthAddr, &opts.PprofAddr} {
		if *a == "" {
			*a = loopbackAny
		}
	}
	s := NewServer(opts)
	if err := s.Start(context.Background()); err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	})
	return s
}

// testClient keeps no idle connections, so nothing outlives a request.
var testClient = &http.Client{
	Timeout:   10 * time.Second,
	Transport: &http.Transport{DisableKeepAlives: true},
}

// get fetches http://addr+path and returns the status, body and content type.
func get(t *testing.T, addr, path string) (int, []byte, string) {
	t.Helper()
	resp, err := testClient.Get("http://" + addr + path)
	if err != nil {
		t.Fatalf("GET %s%s: %v", addr, path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s%s: reading body: %v", addr, path, err)
	}
	return resp.StatusCode, body, resp.Header.Get("Content-Type")
}

func TestServerMetrics(t *testing.T) {
	m := NewMetrics()
	m.InitSink("kafka")
	m.InitSource("simulator")
	m.SetStatsSource(func() Stats { return Stats{Queues: []QueueStats{{Queue: "kafka", Sink: "kafka"}}} })
	s := startServer(t, ServerOptions{Metrics: m})

	code, body, _ := get(t, s.Addrs().Metrics, "/metrics")
	if code != http.StatusOK {
		t.Fatalf("before use: status %d", code)
	}
	for _, name := range contractNames {
		if !bytes.Contains(body, []byte("# TYPE "+name+" ")) {
			t.Errorf("before use: %s missing", name)
		}
	}

	m.MessagesSent.WithLabelValues("kafka").Add(100)
	m.BatchesSent.WithLabelValues("kafka").Inc()
	m.SendDuration.WithLabelValues("kafka").Observe(0.012)
	m.DataGenerated.WithLabelValues("simulator").Add(100)
	m.SampleDelivery.WithLabelValues("kafka").Observe(0.5)
	code, body, _ = get(t, s.Addrs().Metrics, "/metrics")
	if code != http.StatusOK {
		t.Fatalf("after use: status %d", code)
	}
	assertLines(t, string(body),
		`kafka_messages_sent_total{sink="kafka"} 100`,
		`kafka_batches_sent_total{sink="kafka"} 1`,
		`kafka_send_duration_seconds_count{sink="kafka"} 1`,
		`device_data_generated_total{source="simulator"} 100`,
		`iot_sample_delivery_seconds_count{sink="kafka"} 1`,
	)
}

func TestServerConfig(t *testing.T) {
	type telemetryCfg struct {
		MetricsListen string `json:"metrics_listen"`
	}
	type cfg struct {
		Telemetry telemetryCfg `json:"telemetry"`
		Password  string       `json:"password"`
	}
	want := cfg{Telemetry: telemetryCfg{MetricsListen: ":8080"}, Password: "<redacted>"}
	s := startServer(t, ServerOptions{Config: func() any { return want }})

	code, body, ctype := get(t, s.Addrs().Metrics, "/config")
	if code != http.StatusOK || ctype != "application/json" {
		t.Fatalf("status %d, content type %q", code, ctype)
	}
	var got cfg
	if err := json.Unmarshal(body, &got); err != nil {
		t.Fatalf("decoding %s: %v", body, err)
	}
	if got != want {
		t.Errorf("config = %+v, want %+v", got, want)
	}
}

func TestServerConfigEncodingError(t *testing.T) {
	s := startServer(t, ServerOptions{Config: func() any { return func() {} }})
	if code, _, _ := get(t, s.Addrs().Metrics, "/config"); code != http.StatusInternalServerError {
		t.Errorf("status %d, want 500", code)
	}
}

func TestServerHealth(t *testing.T) {
	s := startServer(t, ServerOptions{})
	code, body, ctype := get(t, s.Addrs().Health, "/health")
	if code != http.StatusOK || ctype != "application/json" {
		t.Fatalf("status %d, content type %q", code, ctype)
	}
	var got map[string]string
	if err := json.Unmarshal(body, &got); err != nil || got["status"] != "alive" {
		t.Errorf("body %s (%v), want status alive", body, err)
	}
}

func TestServerReady(t *testing.T) {
	h := NewHealth()
	s := startServer(t, ServerOptions{Health: h})

	type body struct {
		Status     string
		Components []ComponentStatus
	}
	steps := []struct {
		name       string
		set        func()
		wantCode   int
		wantStatus string
		wantComps  int
	}{
		{"nothing registered", func() {}, http.StatusServiceUnavailable, "not ready", 0},
		{"starting", func() { h.Set("buffer", StateOK, ""); h.Set("sink/kafka", StateStarting, "connecting") }, http.StatusServiceUnavailable, "not ready", 2},
		{"all ok", func() { h.Set("sink/kafka", StateOK, "") }, http.StatusOK, "ready", 2},
		{"degraded", func() { h.Set("sink/kafka", StateDegraded, "backing off") }, http.StatusOK, "ready", 2},
		{"down", func() { h.Set("buffer", StateDown, "disk full") }, http.StatusServiceUnavailable, "not ready", 2},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			st.set()
			code, raw, _ := get(t, s.Addrs().Health, "/ready")
			if code != st.wantCode {
				t.Errorf("status %d, want %d", code, st.wantCode)
			}
			if !bytes.Contains(raw, []byte(`"components": [`)) {
				t.Errorf("components is not a JSON array: %s", raw)
			}
			var b body
			if err := json.Unmarshal(raw, &b); err != nil {
				t.Fatalf("decoding %s: %v", raw, err)
			}
			if b.Status != st.wantStatus || len(b.Components) != st.wantComps {
				t.Errorf("body %s: want status %q and %d components", raw, st.wantStatus, st.wantComps)
			}
			for _, c := range b.Components {
				if c.Name == "" || c.State == "" || c.Since.IsZero() {
					t.Errorf("incomplete component %+v", c)
				}
			}
		})
	}
}

func TestServerPprof(t *testing.T) {
	s := startServer(t, ServerOptions{Metrics: NewMetrics()})
	addrs := s.Addrs()

	code, body, _ := get(t, addrs.Pprof, "/debug/pprof/goroutine?debug=1")
	if code != http.StatusOK || !bytes.HasPrefix(body, []byte("goroutine profile: total ")) {
		t.Errorf("goroutine?debug=1: status %d, body starts %.40q", code, body)
	}
	// go tool pprof fetches this: a gzipped protobuf profile.
	code, body, _ = get(t, addrs.Pprof, "/debug/pprof/heap")
	if code != http.StatusOK || !bytes.HasPrefix(body, []byte{0x1f, 0x8b}) {
		t.Errorf("heap: status %d, body starts %.10q, want gzip", code, body)
	}
	if code, _, _ = get(t, addrs.Pprof, "/debug/pprof/"); code != http.StatusOK {
		t.Errorf("index: status %d", code)
	}

	for name, addr := range map[string]string{"metrics": addrs.Metrics, "health": addrs.Health} {
		if code, _, _ := get(t, addr, "/debug/pprof/goroutine?debug=1"); code != http.StatusNotFound {
			t.Errorf("pprof on the %s port: status %d, want 404", name, code)
		}
	}
}

func TestServerPprofOff(t *testing.T) {
	for _, addr := range []string{"", PprofOff} {
		t.Run("addr="+addr, func(t *testing.T) {
			s := NewServer(ServerOptions{MetricsAddr: loopbackAny, HealthAddr: loopbackAny, PprofAddr: addr})
			if err := s.Start(context.Background()); err != nil {
				t.Fatal(err)
			}
			defer func() {
				if err := s.Shutdown(context.Background()); err != nil {
					t.Error(err)
				}
			}()
			if got := s.Addrs(); got.Pprof != "" || got.Metrics == "" || got.Health == "" {
				t.Errorf("Addrs() = %+v, want no pprof", got)
			}
		})
	}
}

func TestServerUnservedEndpoints(t *testing.T) {
	s := startServer(t, ServerOptions{}) // no Metrics, no Config
	for _, path := range []string{"/metrics", "/config"} {
		if code, _, _ := get(t, s.Addrs().Metrics, path); code != http.StatusNotFound {
			t.Errorf("%s: status %d, want 404", path, code)
		}
	}
	if code, _, _ := get(t, s.Addrs().Health, "/ready"); code != http.StatusServiceUnavailable {
		t.Errorf("/ready with nil Health: status %d, want 503", code)
	}
}

// freeAddr returns a loopback address with a port that was free a moment ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", loopbackAny)
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	if err := ln.Close(); err != nil {
		t.Fatal(err)
	}
	return addr
}

func TestServerBindFailure(t *testing.T) {
	for _, busy := range []string{"metrics", "health", "pprof"} {
		t.Run(busy+" in use", func(t *testing.T) {
			taken, err := net.Listen("tcp", loopbackAny)
			if err != nil {
				t.Fatal(err)
			}
			defer taken.Close()

			addrs := map[string]string{"metrics": freeAddr(t), "health": freeAddr(t), "pprof": freeAddr(t)}
			addrs[busy] = taken.Addr().String()
			s := NewServer(ServerOptions{MetricsAddr: addrs["metrics"], HealthAddr: addrs["health"], PprofAddr: addrs["pprof"]})

			err = s.Start(context.Background())
			if err == nil {
				_ = s.Shutdown(context.Background())
				t.Fatal("Start succeeded on an address in use")
			}
			if !strings.Contains(err.Error(), taken.Addr().String()) || !strings.Contains(err.Error(), busy) {
				t.Errorf("error %q does not name %s and %s", err, busy, taken.Addr())
			}
			if got := s.Addrs(); got != (ListenAddrs{}) {
				t.Errorf("Addrs() after failed Start = %+v, want none", got)
			}
			// The listeners bound before the failure were released.
			for name, addr := range addrs {
				if name == busy {
					continue
				}
				ln, err := net.Listen("tcp", addr)
				if err != nil {
					t.Errorf("%s address %s still bound: %v", name, addr, err)
					continue
				}
				ln.Close()
			}
		})
	}
}

func TestServerSameFixedAddress(t *testing.T) {
	addr := freeAddr(t)
	s := NewServer(ServerOptions{MetricsAddr: addr, HealthAddr: addr})
	err := s.Start(context.Background())
	if err == nil {
		_ = s.Shutdown(context.Background())
		t.Fatal("Start succeeded with metrics and health on one address")
	}
	if !strings.Contains(err.Error(), addr) {
		t.Errorf("error %q does not name %s", err, addr)
	}
}

func TestServerLifecycle(t *testing.T) {
	ctx := context.Background()

	unstarted := NewServer(ServerOptions{MetricsAddr: loopbackAny, HealthAddr: loopbackAny})
	if err := unstarted.Shutdown(ctx); err != nil {
		t.Errorf("Shutdown before Start: %v", err)
	}
	if err := unstarted.Start(ctx); err == nil {
		t.Error("Start after Shutdown succeeded")
	}

	s := NewServer(ServerOptions{MetricsAddr: loopbackAny, HealthAddr: loopbackAny, PprofAddr: loopbackAny})
	if err := s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.Start(ctx); err == nil {
		t.Error("second Start succeeded")
	}
	addrs := s.Addrs()
	get(t, addrs.Metrics, "/metrics")
	get(t, addrs.Health, "/ready")
	get(t, addrs.Pprof, "/debug/pprof/goroutine?debug=2")
	if err := s.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if err := s.Shutdown(ctx); err != nil {
		t.Errorf("second Shutdown: %v", err)
	}
	for _, addr := range []string{addrs.Metrics, addrs.Health, addrs.Pprof} {
		if resp, err := testClient.Get("http://" + addr + "/"); err == nil {
			resp.Body.Close()
			t.Errorf("%s still answers after Shutdown", addr)
		}
	}
	goleak.VerifyNone(t)
}

func TestServerShutdownCutsOffSlowRequest(t *testing.T) {
	s := NewServer(ServerOptions{MetricsAddr: loopbackAny, HealthAddr: loopbackAny})
	entered := make(chan struct{})
	// A handler that only ends when its connection is closed.
	s.endpoints[0].handler.(*http.ServeMux).HandleFunc("/block", func(w http.ResponseWriter, r *http.Request) {
		close(entered)
		<-r.Context().Done()
	})
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}

	clientDone := make(chan error, 1)
	go func() {
		resp, err := testClient.Get("http://" + s.Addrs().Metrics + "/block")
		if err == nil {
			resp.Body.Close()
		}
		clientDone <- err
	}()
	<-entered

	ctx, cancel := context.WithCancel(context.Background())
	cancel() // no patience: the blocked request must be cut off
	if err := s.Shutdown(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("Shutdown = %v, want context.Canceled", err)
	}
	if err := <-clientDone; err == nil {
		t.Error("blocked request completed normally")
	}
	goleak.VerifyNone(t)
}
