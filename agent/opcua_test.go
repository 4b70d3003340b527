package agent_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gopcua/opcua/ua"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/iot-producer/iot-producer/agent"
	"github.com/iot-producer/iot-producer/agent/config"
	"github.com/iot-producer/iot-producer/drivers"
	"github.com/iot-producer/iot-producer/drivers/opcua"
	"github.com/iot-producer/iot-producer/record"
	simopcua "github.com/iot-producer/iot-producer/simulator/opcua"
	"github.com/iot-producer/iot-producer/telemetry"
)

// TestOPCUAPLCsThroughTheAgent runs the agent on the simulator's OPC UA
// server, one PLC subscribed and one polled with security None and the
// same with Basic256Sha256 SignAndEncrypt, restarts the server under it, and checks that data resumes without restarting the agent, that the
// gap shows as samples without values, and that /ready and the metrics
// follow each session.
func TestOPCUAPLCsThroughTheAgent(t *testing.T) {
	checkLeaks(t)
	o := simopcua.Options{Devices: 2, TagsPerDevice: 3, Interval: 50 * time.Millisecond, ExtraNamespaces: 1, Secure: true}
	sim, err := simopcua.New(o)
	if err != nil {
		t.Fatal(err)
	}
	if err := sim.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	restarted := false
	t.Cleanup(func() {
		if !restarted {
			_ = sim.Close()
		}
	})
	plc := func(name, mode, dev, security string) string {
		return fmt.Sprintf(`
  - name: %s
    driver: opcua
    endpoint: %s
    mode: %s
    poll_interval: 50ms
    timeout: 1s
    reconnect_max: 500ms
%s
    tags:
      - {name: temperature, address: "%s", type: float64}
      - {name: counter, address: "%s"}
`, name, sim.Endpoint(), mode, security, sim.NodeURI(dev, "temperature"), sim.NodeURI(dev, "counter"))
	}
	const none = "    security_policy: None\n    allow_insecure: true"
	const secured = "    security_policy: Basic256Sha256\n    security_mode: SignAndEncrypt"
	// The simulator's certificate is trusted, as `iot-producer opcua
	// trust` would do.
	state := t.TempDir()
	if _, err := opcua.Trust(state, sim.Certificate()); err != nil {
		t.Fatal(err)
	}
	cluster := newCluster(t)
	yaml := fmt.Sprintf(`
gateway: {id: gw-test, state_dir: %q}
producer: {brokers: ["%s"], topic: iot-test}
telemetry: {metrics_listen: "127.0.0.1:0", health_listen: "127.0.0.1:0", pprof_listen: "off"}
plcs:%s%s%s%s`, state, cluster.ListenAddrs()[0], plc("sub", "subscribe", "sim-0001", none), plc("poll", "poll", "sim-0002", none),
		plc("sub-sec", "subscribe", "sim-0001", secured), plc("poll-sec", "poll", "sim-0002", secured))
	cfg, err := config.Parse([]byte(yaml), "test config")
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	var mu sync.Mutex
	var samples []drivers.Sample
	ready := make(chan struct{})
	a, err := agent.New(cfg, agent.Options{
		Logger:  slog.New(slog.NewTextHandler(io.Discard, nil)),
		OnReady: func() { close(ready) },
		Tap: func(ss []drivers.Sample) {
			mu.Lock()
			samples = append(samples, ss...)
			mu.Unlock()
		},
	})
	if err != nil {
		t.Fatalf("agent.New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	<-ready
	// waitFor polls the tap and the telemetry until ok holds.
	waitFor := func(what string, ok func(ss []drivers.Sample, m telemetry.MetricsSnapshot) bool) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for {
			mu.Lock()
			ss := append([]drivers.Sample(nil), samples...)
			mu.Unlock()
			if ok(ss, telemetry.Snapshot(a.Metrics())) {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("after 30s, %s not seen; health %+v", what, a.Health().Snapshot())
			}
			time.Sleep(20 * time.Millisecond) // polling the tap, not synchronising
		}
	}
	goodAfter := func(ss []drivers.Sample, from int, dev string) int {
		n := 0
		for _, s := range ss[min(from, len(ss)):] {
			if s.Device == dev && s.Quality == drivers.QualityGood {
				n++
			}
		}
		return n
	}
	// health reports whether every OPC UA source is in state with a
	// detail containing want.
	health := func(state telemetry.State, want string) bool {
		n := 0
		for _, c := range a.Health().Snapshot() {
			if strings.HasPrefix(c.Name, "source/opcua:") {
				if c.State != state || !strings.Contains(c.Detail, want) {
					return false
				}
				n++
			}
		}
		return n == 4
	}
	waitFor("good samples of the four PLCs, connected in /ready and the metrics", func(ss []drivers.Sample, m telemetry.MetricsSnapshot) bool {
		return goodAfter(ss, 0, "sub") >= 10 && goodAfter(ss, 0, "poll") >= 10 && goodAfter(ss, 0, "sub-sec") >= 10 && goodAfter(ss, 0, "poll-sec") >= 10 &&
			m.Sum("iot_driver_connected") == 4 && m.Sum("iot_driver_subscriptions") == 2 &&
			health(telemetry.StateOK, "connected; ") && health(telemetry.StateOK, "2 items good, 0 bad")
	})
	if sim.SecuredChannels() < 2 {
		t.Errorf("%d secured channels, want one per secured PLC", sim.SecuredChannels())
	}

	// A node whose status turns bad: its records carry the code's name.
	if err := sim.Set("sim-0001", "temperature", 99.0, ua.StatusBadSensorFailure); err != nil {
		t.Fatal(err)
	}
	bad := findRecord(t, cluster.ListenAddrs(), func(f record.Fields) bool {
		return f.Device == "sub" && f.Tag == "temperature" && f.Status == "BadSensorFailure"
	})
	if bad.Quality != record.QualityBad || !bad.NoValue || bad.Type != record.TypeFloat || bad.SourceTime.IsZero() {
		t.Errorf("record of the failed sensor: %+v, want bad, without value, type float, with its source time", bad)
	}
	if err := sim.Set("sim-0001", "temperature", 21.5, ua.StatusUncertainLastUsableValue); err != nil {
		t.Fatal(err)
	}
	unc := findRecord(t, cluster.ListenAddrs(), func(f record.Fields) bool {
		return f.Device == "sub" && f.Tag == "temperature" && f.Status == "UncertainLastUsableValue"
	})
	// The signal moves on under the status: any value, but one.
	if unc.Quality != record.QualityUncertain || unc.NoValue {
		t.Errorf("record of the uncertain value: %+v, want uncertain with a value", unc)
	}
	if err := sim.Set("sim-0001", "temperature", 22.5, ua.StatusOK); err != nil {
		t.Fatal(err)
	}
	good := findRecord(t, cluster.ListenAddrs(), func(f record.Fields) bool {
		return f.Device == "sub" && f.Tag == "temperature" && f.Seq > unc.Seq && f.Quality == record.QualityGood
	})
	if good.Status != "" {
		t.Errorf("a good record carries status %q", good.Status)
	}

	if err := sim.Close(); err != nil {
		t.Logf("close: %v", err)
	}
	restarted = true
	waitFor("the outage in /ready, the metrics and the samples", func(ss []drivers.Sample, m telemetry.MetricsSnapshot) bool {
		return m.Sum("iot_driver_connected") == 0 && ss[len(ss)-1].Quality == drivers.QualityBad && ss[len(ss)-1].Status != "" &&
			health(telemetry.StateDegraded, "last error at ") && health(telemetry.StateDegraded, "last bad status all tags: Bad") && a.Health().Ready()
	})
	mu.Lock()
	mark := len(samples)
	mu.Unlock()
	o.Port, o.Cert, o.Key = sim.Port(), sim.Certificate(), sim.Key()
	sim2, err := simopcua.New(o)
	if err != nil {
		t.Fatal(err)
	}
	if err := sim2.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sim2.Close() })
	waitFor("data again after the restart", func(ss []drivers.Sample, m telemetry.MetricsSnapshot) bool {
		return goodAfter(ss, mark, "sub") >= 5 && goodAfter(ss, mark, "poll") >= 5 && goodAfter(ss, mark, "sub-sec") >= 5 && goodAfter(ss, mark, "poll-sec") >= 5 &&
			m.Sum("iot_driver_recoveries_total") >= 4 && m.Sum("iot_driver_connected") == 4
	})
	if sim2.SecuredChannels() < 2 {
		t.Errorf("%d secured channels after the restart, want one per secured PLC", sim2.SecuredChannels())
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("agent.Run: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	for _, s := range samples {
		if s.Quality == drivers.QualityBad && !s.Value.Equal(drivers.NoValue(s.Value.Kind)) {
			t.Fatalf("a bad sample with a value: %+v", s)
		}
	}
}

// findRecord reads the topic from the start until a record matches; the
// bound only keeps a broken test from hanging.
func findRecord(t *testing.T, brokers []string, match func(record.Fields) bool) record.Fields {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxWait(200*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	for {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("no matching record in %s: %v", topic, ctx.Err())
		}
		var found *record.Fields
		fs.EachRecord(func(r *kgo.Record) {
			f, err := record.Decode(r.Value)
			if err != nil {
				t.Errorf("record at %d: %v", r.Offset, err)
				return
			}
			if found == nil && match(f) {
				found = &f
			}
		})
		if found != nil {
			return *found
		}
	}
}

// TestOPCUAArrayTypeRefused: a tag whose type is an array is refused when
// the file is read, with the PLC's entry, the tag, its node and the type.
func TestOPCUAArrayTypeRefused(t *testing.T) {
	src := "producer: {brokers: [\"127.0.0.1:1\"]}\nplcs:\n  - {name: press-7, driver: opcua, endpoint: \"opc.tcp://127.0.0.1:4840\",\n     tags: [\n       {name: temps, address: \"ns=2;s=Line1.Temps\", type: \"float64[]\"}]}\n"
	_, err := config.Parse([]byte(src), "test config")
	want := `plcs[0].tags[0].type: tag temps (ns=2;s=Line1.Temps): "float64[]" is an array type: arrays are not supported, a tag reads one scalar (name the element's own node if the server has one) (line 5)`
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("err = %v, want one containing %q", err, want)
	}
}
