package opcua_test

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gopcua/opcua/ua"

	"github.com/iot-producer/iot-producer/agent/config"
	"github.com/iot-producer/iot-producer/drivers"
	"github.com/iot-producer/iot-producer/drivers/opcua"
	simopcua "github.com/iot-producer/iot-producer/simulator/opcua"
)

// collector keeps every emitted sample.
type collector struct {
	mu      sync.Mutex
	samples []drivers.Sample
	changed chan struct{}
}

func newCollector() *collector { return &collector{changed: make(chan struct{}, 1)} }

func (c *collector) emit(s []drivers.Sample) {
	c.mu.Lock()
	c.samples = append(c.samples, s...)
	c.mu.Unlock()
	select {
	case c.changed <- struct{}{}:
	default:
	}
}

// waitFor waits until pred holds for the samples so far; the bound only
// keeps a broken test from hanging.
func (c *collector) waitFor(t *testing.T, what string, pred func([]drivers.Sample) bool) []drivers.Sample {
	t.Helper()
	deadline := time.NewTimer(60 * time.Second)
	defer deadline.Stop()
	for {
		c.mu.Lock()
		snap := append([]drivers.Sample(nil), c.samples...)
		c.mu.Unlock()
		if pred(snap) {
			return snap
		}
		select {
		case <-c.changed:
		case <-deadline.C:
			t.Fatalf("waiting for %s: not seen in %d samples", what, len(snap))
		}
	}
}

func (c *collector) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.samples)
}

// tryWait is waitFor that reports instead of failing.
func (c *collector) tryWait(bound time.Duration, pred func([]drivers.Sample) bool) bool {
	deadline := time.NewTimer(bound)
	defer deadline.Stop()
	for {
		c.mu.Lock()
		snap := append([]drivers.Sample(nil), c.samples...)
		c.mu.Unlock()
		if pred(snap) {
			return true
		}
		select {
		case <-c.changed:
		case <-deadline.C:
			return false
		}
	}
}

// startSim starts a simulator and stops it when the test ends.
func startSim(t *testing.T, o simopcua.Options) *simopcua.Server {
	t.Helper()
	s, err := simopcua.New(o)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// runDriver starts a driver and stops it when the test ends.
func runDriver(t *testing.T, name string, cfg *opcua.Config, stateDir string, onError func(string)) (*opcua.Driver, *collector) {
	t.Helper()
	d, err := opcua.NewDriver(opcua.Options{Name: name, Config: cfg, StateDir: stateDir, OnError: onError, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	col := newCollector()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx, col.emit) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return d, col
}

// config returns a config for tags of a simulator.
func simConfig(s *simopcua.Server, mode, policy string, tags ...opcua.Tag) *opcua.Config {
	c := opcua.NewConfig()
	c.Endpoint = s.Endpoint()
	c.Mode = mode
	c.PollInterval = config.Duration(100 * time.Millisecond)
	c.SecurityPolicy = policy
	if policy == "None" {
		c.AllowInsecure = true
	}
	c.Timeout = config.Duration(2 * time.Second)
	c.Tags = tags
	return c
}

// lastGood returns the last good sample of a tag.
func lastGood(ss []drivers.Sample, tag string) (drivers.Sample, bool) {
	for i := len(ss) - 1; i >= 0; i-- {
		if ss[i].Tag == tag && ss[i].Quality == drivers.QualityGood {
			return ss[i], true
		}
	}
	return drivers.Sample{}, false
}

func countGood(ss []drivers.Sample, tag string) int {
	n := 0
	for _, s := range ss {
		if s.Tag == tag && s.Quality == drivers.QualityGood {
			n++
		}
	}
	return n
}

func TestTypesExact(t *testing.T) {
	sim := startSim(t, simopcua.Options{Types: true, ExtraNamespaces: 3})
	want := map[string]drivers.Value{
		"Boolean":       drivers.Bool(true),
		"SByte":         drivers.Int(-128),
		"Byte":          drivers.Uint(255),
		"Int16":         drivers.Int(-32768),
		"UInt16":        drivers.Uint(65535),
		"Int32":         drivers.Int(math.MinInt32),
		"UInt32":        drivers.Uint(math.MaxUint32),
		"Int64":         drivers.Int(math.MinInt64 + 1),
		"UInt64":        drivers.Uint(math.MaxUint64 - 1),
		"Float":         drivers.Float(0.1),
		"Double":        drivers.Float(0.1),
		"String":        drivers.String("Grüße, \"OPC\" ☃"),
		"DateTime":      drivers.String("2026-11-26T08:00:00.1234567Z"),
		"Guid":          drivers.String("72962B91-FA75-4AE6-8D28-B404DC7DAF63"),
		"ByteString":    drivers.String("AAEC/v8="),
		"XmlElement":    drivers.String("<a>1</a>"),
		"NodeId":        drivers.String("ns=3;s=x"),
		"StatusCode":    drivers.Uint(uint64(ua.StatusBadOutOfRange)),
		"QualifiedName": drivers.String("2:q"),
		"LocalizedText": drivers.String("Druck"),
	}
	for _, mode := range []string{"poll", "subscribe"} {
		t.Run(mode, func(t *testing.T) {
			var tags []opcua.Tag
			for _, tv := range simopcua.TypeValues() {
				// By namespace URI: the simulator's index is 4 here.
				tags = append(tags, opcua.Tag{Name: tv.Name, Address: sim.NodeURI("types", tv.Name)})
			}
			_, col := runDriver(t, "types", simConfig(sim, mode, "None", tags...), t.TempDir(), nil)
			ss := col.waitFor(t, "every type", func(ss []drivers.Sample) bool {
				for name := range want {
					if _, ok := lastGood(ss, name); !ok {
						return false
					}
				}
				return true
			})
			for name, w := range want {
				got, _ := lastGood(ss, name)
				if !got.Value.Equal(w) {
					t.Errorf("%s: got %+v, want %+v", name, got.Value, w)
				}
				if got.SourceTime.IsZero() {
					t.Errorf("%s: no source time", name)
				}
			}
		})
	}
	if sim.NamespaceIndex() != 4 {
		t.Errorf("namespace index %d, want 4 (three spare namespaces before it)", sim.NamespaceIndex())
	}
}

func TestNodeNotations(t *testing.T) {
	sim := startSim(t, simopcua.Options{Devices: 1, TagsPerDevice: 2})
	ns := sim.NamespaceIndex()
	tags := []opcua.Tag{
		{Name: "by_index", Address: sim.NodeID("sim-0001", "temperature")},
		{Name: "by_uri", Address: sim.NodeURI("sim-0001", "pressure")},
		{Name: "by_path", BrowsePath: "urn:iot-producer:simulator:sim-0001/" + string(rune('0'+ns)) + ":temperature"},
		{Name: "numeric_ns0", Address: "i=2259"}, // Server_ServerStatus_State
	}
	_, col := runDriver(t, "notations", simConfig(sim, "poll", "None", tags...), t.TempDir(), nil)
	ss := col.waitFor(t, "all four tags good", func(ss []drivers.Sample) bool {
		for _, tg := range tags {
			if _, ok := lastGood(ss, tg.Name); !ok {
				return false
			}
		}
		return true
	})
	a, _ := lastGood(ss, "by_index")
	b, _ := lastGood(ss, "by_path")
	if a.Value.Kind != drivers.KindFloat || b.Value.Kind != drivers.KindFloat {
		t.Errorf("kinds %v and %v, want float", a.Value.Kind, b.Value.Kind)
	}
}

func TestStatusQuality(t *testing.T) {
	sim := startSim(t, simopcua.Options{Secure: true, Devices: 1, TagsPerDevice: 1})
	for _, mode := range []string{"poll", "subscribe"} {
		t.Run(mode, func(t *testing.T) {
			if err := sim.Set("sim-0001", "temperature", 21.5, ua.StatusOK); err != nil {
				t.Fatal(err)
			}
			d, col := runDriver(t, "q-"+mode, simConfig(sim, mode, "None", opcua.Tag{Name: "t", Address: sim.NodeID("sim-0001", "temperature")}), t.TempDir(), nil)
			col.waitFor(t, "a good 21.5", func(ss []drivers.Sample) bool {
				s, ok := lastGood(ss, "t")
				return ok && s.Value.F == 21.5
			})
			cases := []struct {
				status ua.StatusCode
				q      drivers.Quality
				name   string
			}{
				{ua.StatusUncertainLastUsableValue, drivers.QualityUncertain, "UncertainLastUsableValue"},
				{ua.StatusBadSensorFailure, drivers.QualityBad, "BadSensorFailure"},
				{ua.StatusOK, drivers.QualityGood, ""},
			}
			for _, c := range cases {
				if err := sim.Set("sim-0001", "temperature", 99.0, c.status); err != nil {
					t.Fatal(err)
				}
				ss := col.waitFor(t, c.q.String()+" sample", func(ss []drivers.Sample) bool {
					s := ss[len(ss)-1]
					return s.Quality == c.q && (c.q != drivers.QualityGood || s.Value.F == 99)
				})
				s := ss[len(ss)-1]
				switch c.q {
				case drivers.QualityBad:
					if !s.Value.Equal(drivers.NoValue(drivers.KindFloat)) {
						t.Errorf("bad sample carries %+v; a bad value must not pass as a reading", s.Value)
					}
				case drivers.QualityUncertain:
					if s.Value.F != 99 {
						t.Errorf("uncertain sample %v, want 99", s.Value.F)
					}
				}
				if c.name != "" && !strings.HasSuffix(d.Status().LastStatus, c.name) {
					t.Errorf("last status %q, want %s", d.Status().LastStatus, c.name)
				}
				if s.Status != c.name {
					t.Errorf("sample status %q, want %q", s.Status, c.name)
				}
			}
		})
	}
}

// TestRestart restarts the simulator mid-stream: data resumes without
// restarting the driver and the gap shows as bad samples, never as wrong
// values.
func TestRestart(t *testing.T) {
	for _, tc := range []struct{ mode, policy string }{
		{"subscribe", "None"}, {"poll", "None"},
		{"subscribe", "Basic256Sha256"}, {"poll", "Basic256Sha256"},
	} {
		t.Run(tc.mode+"/"+tc.policy, func(t *testing.T) {
			o := simopcua.Options{Devices: 2, TagsPerDevice: 3, Interval: 50 * time.Millisecond, Secure: tc.policy != "None"}
			sim, err := simopcua.New(o)
			if err != nil {
				t.Fatal(err)
			}
			if err := sim.Start(context.Background()); err != nil {
				t.Fatal(err)
			}
			state := t.TempDir()
			if tc.policy != "None" {
				if _, err := opcua.Trust(state, sim.Certificate()); err != nil {
					t.Fatal(err)
				}
			}
			var tags []opcua.Tag
			for _, dev := range []string{"sim-0001", "sim-0002"} {
				for _, tag := range []string{"temperature", "pressure", "counter"} {
					tags = append(tags, opcua.Tag{Name: dev + "." + tag, Address: sim.NodeURI(dev, tag)})
				}
			}
			cfg := simConfig(sim, tc.mode, tc.policy, tags...)
			cfg.ReconnectMax = config.Duration(time.Second)
			cfg.Watchdog = config.Duration(3 * time.Second)
			var mu sync.Mutex
			kinds := map[string]int{}
			d, col := runDriver(t, "restart", cfg, state, func(k string) { mu.Lock(); kinds[k]++; mu.Unlock() })
			if !col.tryWait(30*time.Second, func(ss []drivers.Sample) bool { return countGood(ss, "sim-0001.counter") >= 10 }) {
				t.Fatalf("no 10 good counters; status %+v", d.Status())
			}
			t.Log("closing")
			if err := sim.Close(); err != nil {
				t.Logf("close: %v", err)
			}
			before := col.waitFor(t, "bad samples after the server stopped", func(ss []drivers.Sample) bool {
				return ss[len(ss)-1].Quality == drivers.QualityBad
			})
			if st := before[len(before)-1].Status; !strings.HasPrefix(st, "Bad") {
				t.Errorf("the outage's sample has status %q, want a Bad… code", st)
			}
			// The same server comes back on the same port with the same
			// identity, its signals started afresh.
			o.Port, o.Cert, o.Key = sim.Port(), sim.Certificate(), sim.Key()
			t.Log("restarting")
			sim2 := startSim(t, o)
			t.Log("restarted")
			n := len(before)
			col.waitFor(t, "good samples after the restart", func(ss []drivers.Sample) bool {
				return countGood(ss[n:], "sim-0001.counter") >= 5
			})
			if r := d.Status().Recoveries; r < 1 {
				t.Logf("status: %+v", d.Status())
				t.Errorf("recoveries %d, want at least 1", r)
			}
			if tc.policy != "None" && (sim.SecuredChannels() == 0 || sim2.SecuredChannels() == 0) {
				t.Errorf("secured channels before and after the restart: %d, %d", sim.SecuredChannels(), sim2.SecuredChannels())
			}
			ss := col.waitFor(t, "", func([]drivers.Sample) bool { return true })
			for _, s := range ss {
				if s.Quality == drivers.QualityBad && !s.Value.Equal(drivers.NoValue(s.Value.Kind)) {
					t.Fatalf("bad sample with a value: %+v", s)
				}
				if s.Quality == drivers.QualityGood && s.Value.Kind == drivers.KindFloat && math.IsNaN(s.Value.F) {
					t.Fatalf("good sample without a value: %+v", s)
				}
			}
			mu.Lock()
			defer mu.Unlock()
			if len(kinds) == 0 {
				t.Errorf("no error reported")
			}
		})
	}
}

// errorKinds returns a channel of the error kinds a driver reports and the
// OnError that sends them, dropping kinds once 100 wait unread.
func errorKinds() (chan string, func(kind string)) {
	errs := make(chan string, 100)
	return errs, func(k string) {
		select {
		case errs <- k:
		default:
		}
	}
}

func TestUntrustedServerRefused(t *testing.T) {
	sim := startSim(t, simopcua.Options{Secure: true, Devices: 1, TagsPerDevice: 1})
	state := t.TempDir()
	cfg := simConfig(sim, "subscribe", "Basic256Sha256", opcua.Tag{Name: "t", Address: sim.NodeID("sim-0001", "temperature")})
	cfg.ReconnectMax = config.Duration(time.Second)
	errs, onError := errorKinds()
	d, col := runDriver(t, "untrusted", cfg, state, onError)
	if k := <-errs; k != opcua.KindSecurity {
		t.Fatalf("error kind %q, want security", k)
	}
	msg := d.Status().LastError
	if !strings.Contains(msg, "iot-producer opcua trust") || !strings.Contains(msg, opcua.Fingerprint(sim.Certificate())) {
		t.Fatalf("the refusal does not say how to trust: %s", msg)
	}
	if _, ok := lastGood(col.waitFor(t, "", func([]drivers.Sample) bool { return true }), "t"); ok {
		t.Fatal("a good sample from an untrusted server")
	}
	rejected := opcua.RejectDir(state) + "/" + opcua.Fingerprint(sim.Certificate()) + ".der"
	if !strings.Contains(msg, rejected) {
		t.Errorf("the refusal does not name the saved certificate %s: %s", rejected, msg)
	}
	if _, err := opcua.Trust(state, sim.Certificate()); err != nil {
		t.Fatal(err)
	}
	// Once trusted, the driver reads at its next attempt, without a restart.
	col.waitFor(t, "a good sample once trusted", func(ss []drivers.Sample) bool { _, ok := lastGood(ss, "t"); return ok })
	if sim.SecuredChannels() == 0 {
		t.Error("no secured channel opened")
	}
}

func TestTrustOnFirstUse(t *testing.T) {
	o := simopcua.Options{Secure: true, Devices: 1, TagsPerDevice: 1}
	sim, err := simopcua.New(o)
	if err != nil {
		t.Fatal(err)
	}
	if err := sim.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	state := t.TempDir()
	cfg := simConfig(sim, "poll", "Aes256_Sha256_RsaPss", opcua.Tag{Name: "t", Address: sim.NodeID("sim-0001", "temperature")})
	cfg.TrustOnFirstUse = true
	cfg.ReconnectMax = config.Duration(time.Second)
	errs, onError := errorKinds()
	d, col := runDriver(t, "tofu", cfg, state, onError)
	// The first connection trusts the certificate and reads.
	col.waitFor(t, "a good sample", func(ss []drivers.Sample) bool { _, ok := lastGood(ss, "t"); return ok })
	if !opcua.IsTrusted(state, sim.Certificate()) {
		t.Fatal("certificate not in the trust list after first use")
	}
	// The server comes back on the same endpoint with another certificate:
	// refused, it is not the first use any more.
	if err := sim.Close(); err != nil {
		t.Logf("close: %v", err)
	}
	o.Port = sim.Port()
	other := startSim(t, o)
	for k := range errs {
		if k == opcua.KindSecurity {
			break
		}
	}
	if msg := d.Status().LastError; !strings.Contains(msg, opcua.Fingerprint(other.Certificate())) || !strings.Contains(msg, "iot-producer opcua trust") {
		t.Errorf("the refusal of the changed certificate: %s", msg)
	}
	if opcua.IsTrusted(state, other.Certificate()) {
		t.Fatal("a changed certificate was trusted")
	}
}

// testLogger logs through t.Log.
func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(b)))
	return len(b), nil
}

// TestNetworkCut stalls the network under a session (nothing is closed,
// nothing answers): the subscription's watchdog or the read's timeout ends
// the session, the outage shows as bad samples, and the session comes back
// when the network does.
func TestNetworkCut(t *testing.T) {
	for _, mode := range []string{"subscribe", "poll"} {
		t.Run(mode, func(t *testing.T) {
			sim := startSim(t, simopcua.Options{Devices: 1, TagsPerDevice: 3, Interval: 50 * time.Millisecond})
			cfg := simConfig(sim, mode, "None", opcua.Tag{Name: "counter", Address: sim.NodeURI("sim-0001", "counter")})
			cfg.Timeout = config.Duration(time.Second)
			cfg.Watchdog = config.Duration(2 * time.Second)
			cfg.ReconnectMax = config.Duration(time.Second)
			errs := make(chan string, 1000)
			d, col := runDriver(t, "cut-"+mode, cfg, t.TempDir(), func(k string) {
				select {
				case errs <- k:
				default:
				}
			})
			col.waitFor(t, "5 good samples", func(ss []drivers.Sample) bool { return countGood(ss, "counter") >= 5 })
			sim.Stall(true)
			want := opcua.KindRead
			if mode == "subscribe" {
				want = opcua.KindSilent
			}
			if k := <-errs; k != want {
				t.Errorf("first error kind %q, want %q", k, want)
			}
			before := col.waitFor(t, "a bad sample for the cut", func(ss []drivers.Sample) bool {
				return ss[len(ss)-1].Quality == drivers.QualityBad
			})
			sim.Stall(false)
			n := len(before)
			col.waitFor(t, "good samples once the network is back", func(ss []drivers.Sample) bool {
				return countGood(ss[n:], "counter") >= 5
			})
			if st := d.Status(); st.Recoveries < 1 || st.State != opcua.StateConnected {
				t.Errorf("status after the cut: %+v", st)
			}
		})
	}
}

// TestQuietSubscriptionKept: a subscription with nothing to report (a
// still plant, a deadband) is not taken for a dead one: the watchdog asks
// the server, which answers, and the session stays.
func TestQuietSubscriptionKept(t *testing.T) {
	// The signals never move: after the first values, nothing changes.
	sim := startSim(t, simopcua.Options{Devices: 1, TagsPerDevice: 2, Interval: time.Hour})
	cfg := simConfig(sim, "subscribe", "None", opcua.Tag{Name: "t", Address: sim.NodeURI("sim-0001", "temperature")})
	cfg.Watchdog = config.Duration(300 * time.Millisecond)
	cfg.Timeout = config.Duration(2 * time.Second)
	errs := make(chan string, 100)
	d, col := runDriver(t, "quiet", cfg, t.TempDir(), func(k string) { errs <- k })
	col.waitFor(t, "the first value", func(ss []drivers.Sample) bool { _, ok := lastGood(ss, "t"); return ok })
	// Wait for three watchdog probes, then look at what happened.
	for d.Status().Probes < 3 {
		select {
		case k := <-errs:
			t.Fatalf("error %q on a quiet subscription: %+v", k, d.Status())
		case <-time.After(50 * time.Millisecond): // polling the probe counter
		}
	}
	if st := d.Status(); st.Recoveries != 0 || st.State != opcua.StateConnected || st.ItemsBad != 0 {
		t.Fatalf("status after three probes: %+v", st)
	}
	if n := col.len(); n != 1 {
		t.Errorf("%d samples, want the first value only", n)
	}
}

// TestSecuredSessions reads the simulator over every secured policy and
// mode, in both modes of the driver, its certificate trusted beforehand.
func TestSecuredSessions(t *testing.T) {
	sim := startSim(t, simopcua.Options{Secure: true, Devices: 1, TagsPerDevice: 3, Interval: 50 * time.Millisecond})
	for _, policy := range []string{"Basic256Sha256", "Aes128_Sha256_RsaOaep", "Aes256_Sha256_RsaPss"} {
		for _, secMode := range []string{"SignAndEncrypt", "Sign"} {
			for _, mode := range []string{"subscribe", "poll"} {
				t.Run(policy+"/"+secMode+"/"+mode, func(t *testing.T) {
					state := t.TempDir()
					if _, err := opcua.Trust(state, sim.Certificate()); err != nil {
						t.Fatal(err)
					}
					cfg := simConfig(sim, mode, policy, opcua.Tag{Name: "counter", Address: sim.NodeURI("sim-0001", "counter")})
					cfg.SecurityMode = secMode
					d, col := runDriver(t, "sec", cfg, state, nil)
					col.waitFor(t, "5 good samples", func(ss []drivers.Sample) bool { return countGood(ss, "counter") >= 5 })
					if st := d.Status(); st.State != opcua.StateConnected || st.LastError != "" {
						t.Errorf("status %+v", st)
					}
					if sim.SecuredChannels() == 0 {
						t.Error("no secured channel opened")
					}
				})
			}
		}
	}
}

// TestSecureChannelRenewed: a channel whose token lives 4s is renewed
// every 3s (gopcua renews at 75%, in whole seconds); the session, its
// subscription and the data go on through the renewals, with nothing
// counted as a failure.
//
// Secured, in poll mode only: gopcua v0.8.0's server renews a secured
// channel by rewriting the keys of the instance its subscriptions are
// publishing on (uasc/secure_channel.go:810 against
// secure_channel_instance.go:174), a data race in the simulator, not in
// the driver. Its renewal also rewrites the channel's security mode
// (uasc/secure_channel.go:745) while the server sends responses reading
// it (secure_channel_instance.go:158), whatever the policy, which the
// race detector reports now and then; so this test runs without it
// (`make test` runs it so, after the race-detector run).
func TestSecureChannelRenewed(t *testing.T) {
	if raceDetector {
		t.Skip("gopcua v0.8.0's server renews a channel with a data race (uasc/secure_channel.go:745 against secure_channel_instance.go:158); `make test` runs this test without the race detector")
	}
	for _, tc := range []struct{ mode, policy string }{
		{"subscribe", "None"}, {"poll", "None"}, {"poll", "Basic256Sha256"},
	} {
		t.Run(tc.mode+"/"+tc.policy, func(t *testing.T) {
			sim := startSim(t, simopcua.Options{Secure: tc.policy != "None", Devices: 1, TagsPerDevice: 3, Interval: 50 * time.Millisecond})
			state := t.TempDir()
			if _, err := opcua.Trust(state, sim.Certificate()); err != nil {
				t.Fatal(err)
			}
			cfg := simConfig(sim, tc.mode, tc.policy, opcua.Tag{Name: "counter", Address: sim.NodeURI("sim-0001", "counter")})
			// A request a second: gopcua's client renews without ordering
			// its wait for requests in flight against a request starting
			// (uasc/secure_channel.go:855 against :910), which the race
			// detector reports when a renewal meets one; sparse requests
			// make that rare.
			cfg.PollInterval = config.Duration(time.Second)
			errs, onError := errorKinds()
			d, err := opcua.NewDriver(opcua.Options{Name: "renew", Config: cfg, StateDir: state, Logger: testLogger(t), OnError: onError})
			if err != nil {
				t.Fatal(err)
			}
			opcua.SetChannelLifetime(d, 4*time.Second)
			col := newCollector()
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- d.Run(ctx, col.emit) }()
			t.Cleanup(func() {
				cancel()
				if err := <-done; err != nil {
					t.Errorf("Run: %v", err)
				}
			})
			col.waitFor(t, "a good sample", func(ss []drivers.Sample) bool { return countGood(ss, "counter") > 0 })
			opens := sim.OpenRequests()
			// Two renewals, then good samples after them.
			var n int
			col.waitFor(t, "two renewals and good samples after them", func(ss []drivers.Sample) bool {
				if sim.OpenRequests() < opens+2 {
					n = len(ss)
					return false
				}
				return countGood(ss[n:], "counter") >= 3
			})
			select {
			case k := <-errs:
				t.Fatalf("error %q through the renewals: %+v", k, d.Status())
			default:
			}
			if st := d.Status(); st.Recoveries != 0 || st.State != opcua.StateConnected || st.ItemsBad != 0 {
				t.Errorf("status after the renewals: %+v", st)
			}
			for _, s := range col.waitFor(t, "", func([]drivers.Sample) bool { return true }) {
				if s.Quality != drivers.QualityGood {
					t.Fatalf("a %s sample through the renewals: %+v", s.Quality, s)
				}
			}
		})
	}
}

// lockedBuffer is a log sink safe for the driver's goroutine.
type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestArrayAtRunTime: a node the config takes for a scalar holds an array
// (the config cannot know): its samples are bad with status
// BadTypeMismatch, one log line names the PLC, the tag, the node and the
// array's type, the other tags go on, and the tag is good again when the
// node holds a scalar again.
func TestArrayAtRunTime(t *testing.T) {
	sim := startSim(t, simopcua.Options{Devices: 1, TagsPerDevice: 3, Interval: time.Hour})
	for _, mode := range []string{"subscribe", "poll"} {
		t.Run(mode, func(t *testing.T) {
			if err := sim.Set("sim-0001", "temperature", 20.5, ua.StatusOK); err != nil {
				t.Fatal(err)
			}
			var logs lockedBuffer
			cfg := simConfig(sim, mode, "None",
				opcua.Tag{Name: "temp", BrowsePath: "urn:iot-producer:simulator:sim-0001/urn:iot-producer:simulator:temperature"},
				opcua.Tag{Name: "pressure", Address: sim.NodeURI("sim-0001", "pressure")})
			d, err := opcua.NewDriver(opcua.Options{Name: "arr-" + mode, Config: cfg, StateDir: t.TempDir(),
				Logger: slog.New(slog.NewTextHandler(&logs, nil))})
			if err != nil {
				t.Fatal(err)
			}
			col := newCollector()
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- d.Run(ctx, col.emit) }()
			defer func() {
				cancel()
				if err := <-done; err != nil {
					t.Errorf("Run: %v", err)
				}
			}()
			col.waitFor(t, "a good 20.5", func(ss []drivers.Sample) bool {
				s, ok := lastGood(ss, "temp")
				return ok && s.Value.F == 20.5
			})
			if err := sim.Set("sim-0001", "temperature", []float64{1, 2, 3}, ua.StatusOK); err != nil {
				t.Fatal(err)
			}
			var bad drivers.Sample
			ss := col.waitFor(t, "a bad sample of the array", func(ss []drivers.Sample) bool {
				for _, s := range ss {
					if s.Tag == "temp" && s.Quality == drivers.QualityBad {
						bad = s
						return true
					}
				}
				return false
			})
			if bad.Status != "BadTypeMismatch" || bad.HasValue() || bad.Value.Kind != drivers.KindFloat {
				t.Errorf("sample of the array: %+v, want bad, BadTypeMismatch, float without value", bad)
			}
			log := logs.String()
			for _, want := range []string{"device=arr-" + mode, "tag=temp", sim.NodeID("sim-0001", "temperature"), "array of 3 Double;", "BadTypeMismatch"} {
				if !strings.Contains(log, want) {
					t.Errorf("the log does not say %q:\n%s", want, log)
				}
			}
			if st := d.Status(); st.State != opcua.StateConnected || st.Recoveries != 0 || st.ItemsBad != 1 || st.LastStatus != "temp: BadTypeMismatch" {
				t.Errorf("status with the array: %+v", st)
			}
			if err := sim.Set("sim-0001", "temperature", 21.5, ua.StatusOK); err != nil {
				t.Fatal(err)
			}
			n := len(ss)
			col.waitFor(t, "a good 21.5 again", func(ss []drivers.Sample) bool {
				s, ok := lastGood(ss[n:], "temp")
				return ok && s.Value.F == 21.5
			})
			if _, ok := lastGood(col.waitFor(t, "", func([]drivers.Sample) bool { return true }), "pressure"); !ok {
				t.Error("no good sample of the other tag")
			}
		})
	}
}

// TestSimulatorChecksTheClientSignature: a client whose key does not match
// the certificate it presents cannot open a secured channel on the
// simulator (its front checks the OpenSecureChannel request's signature);
// with its own key again it can.
func TestSimulatorChecksTheClientSignature(t *testing.T) {
	sim := startSim(t, simopcua.Options{Secure: true, Devices: 1, TagsPerDevice: 1})
	state := t.TempDir()
	if _, err := opcua.Trust(state, sim.Certificate()); err != nil {
		t.Fatal(err)
	}
	if _, err := opcua.LoadPKI(state, true); err != nil {
		t.Fatal(err)
	}
	keyPath := filepath.Join(opcua.PKIDir(state), "own", "key.pem")
	own, err := os.ReadFile(keyPath)
	if err != nil {
		t.Fatal(err)
	}
	_, other, err := opcua.NewCertificate("impostor", "urn:impostor", nil, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(other)}), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := simConfig(sim, "poll", "Basic256Sha256", opcua.Tag{Name: "t", Address: sim.NodeURI("sim-0001", "temperature")})
	cfg.ReconnectMax = config.Duration(time.Second)
	errs, onError := errorKinds()
	d, col := runDriver(t, "impostor", cfg, state, onError)
	if k := <-errs; k != opcua.KindConnect {
		t.Fatalf("error kind %q, want connect: %+v", k, d.Status())
	}
	if sim.SecuredChannels() != 0 {
		t.Fatalf("%d secured channels opened with a key that does not match the certificate", sim.SecuredChannels())
	}
	if _, ok := lastGood(col.waitFor(t, "", func([]drivers.Sample) bool { return true }), "t"); ok {
		t.Fatal("a good sample over a channel whose request was not signed by the certificate's key")
	}
	if err := os.WriteFile(keyPath, own, 0o600); err != nil {
		t.Fatal(err)
	}
	col.waitFor(t, "a good sample with the right key", func(ss []drivers.Sample) bool { _, ok := lastGood(ss, "t"); return ok })
}
