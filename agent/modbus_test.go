package agent_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/iot-producer/iot-producer/agent"
	"github.com/iot-producer/iot-producer/agent/config"
	"github.com/iot-producer/iot-producer/drivers"
	mb "github.com/iot-producer/iot-producer/drivers/modbus"
	sim "github.com/iot-producer/iot-producer/simulator/modbus"
	"github.com/iot-producer/iot-producer/telemetry"
)

// serveModbus serves two units of a small register map on a loopback port
// that accepts a single connection; unit 2 never answers.
func serveModbus(t *testing.T) (string, *sim.Server) {
	t.Helper()
	f32 := mb.Type{Base: mb.Float32}
	s, err := sim.NewSimulator(sim.SimOptions{Units: []sim.Unit{
		{ID: 1, Points: []sim.Point{
			{Name: "speed", Register: mb.Holding, Address: 0, Type: f32, Order: mb.CDAB, Value: drivers.Float(1450.5)},
			{Name: "level", Register: mb.Input, Address: 4, Type: mb.Type{Base: mb.Int16}, Value: drivers.Int(-125)},
			{Name: "run", Register: mb.Coil, Address: 2, Type: mb.Type{Base: mb.Bool}, Value: drivers.Bool(true)},
		}},
		{ID: 2, Points: []sim.Point{{Name: "x", Register: mb.Holding, Address: 0, Type: f32}}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	srv := sim.NewServer(s.Bank(), sim.ServerOptions{MaxConns: 1})
	srv.SetFaults(2, sim.Faults{Silent: true})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.ServeTCP(ctx, ln) }()
	t.Cleanup(func() { cancel(); <-done })
	return ln.Addr().String(), srv
}

func modbusConfig(t *testing.T, dir, endpoint, broker, extra string) *config.Config {
	t.Helper()
	yaml := fmt.Sprintf(`
gateway: {id: gw-test, state_dir: %q}
producer: {brokers: ["%[4]s"], topic: iot-test}
telemetry: {metrics_listen: "127.0.0.1:0", health_listen: "127.0.0.1:0", pprof_listen: "off"}
plcs:
  - name: pump
    driver: modbus
    endpoint: %[2]s
    unit_id: 1
    poll_interval: 20ms
    timeout: 100ms
    tags:
      - {name: speed, address: "40001", type: float32, byte_order: CDAB}
      - {name: level_pct, address: "30005", type: int16, scale: 0.1}
      - {name: running, address: "2", register: coil, type: bool}
      - {name: level_sign, address: "4", register: input, type: bool, bit: 15}
  - name: dead
    driver: modbus
    endpoint: %[2]s
    unit_id: 2
    poll_interval: 20ms
    timeout: 50ms
    tags:
      - {name: x, address: "40001", type: float32}
%[3]s`, dir, endpoint, extra, broker)
	cfg, err := config.Parse([]byte(yaml), "test config")
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	return cfg
}

// TestModbusPLCsThroughTheAgent runs the agent on two PLCs behind one
// single-connection endpoint: the live one's values arrive decoded, the
// dead one's errors are counted, and the device sees one connection.
func TestModbusPLCsThroughTheAgent(t *testing.T) {
	checkLeaks(t)
	endpoint, srv := serveModbus(t)
	cfg := modbusConfig(t, t.TempDir(), endpoint, newCluster(t).ListenAddrs()[0], "")
	var mu sync.Mutex
	latest := map[string]drivers.Sample{}
	ready := make(chan struct{})
	a, err := agent.New(cfg, agent.Options{
		Logger:  slog.New(slog.NewTextHandler(io.Discard, nil)),
		OnReady: func() { close(ready) },
		Tap: func(ss []drivers.Sample) {
			mu.Lock()
			defer mu.Unlock()
			for _, s := range ss {
				latest[s.Device+"/"+s.Tag] = s
			}
		},
	})
	if err != nil {
		t.Fatalf("agent.New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	<-ready
	want := map[string]drivers.Value{
		"pump/speed":      drivers.Float(1450.5),
		"pump/level_pct":  drivers.Float(-12.5),
		"pump/running":    drivers.Bool(true),
		"pump/level_sign": drivers.Bool(true),
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		mu.Lock()
		ok := len(latest) == len(want)+1
		for k, w := range want {
			if s := latest[k]; s.Quality != drivers.QualityGood || !s.Value.Equal(w) {
				ok = false
			}
		}
		dead := latest["dead/x"]
		mu.Unlock()
		errs := telemetry.Snapshot(a.Metrics()).Sum("iot_driver_errors_total")
		if ok && dead.Quality == drivers.QualityBad && errs >= 3 {
			break
		}
		if time.Now().After(deadline) {
			mu.Lock()
			t.Fatalf("after 10s: samples %+v, driver errors %.0f", latest, errs)
		}
		time.Sleep(10 * time.Millisecond) // polling the tap, not synchronising
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("agent.Run: %v", err)
	}
	// The dead unit's timeouts reopen the connection; the device may
	// refuse a new one while it still holds the old, but it never sees
	// two at once.
	if st := srv.Stats(); st.Peak != 1 {
		t.Fatalf("device saw %+v: the two PLCs must share one connection", st)
	}
}

// TestModbusConfigErrorsNameThePLC checks that what the driver would
// refuse is refused when the file is read, naming the key and line, so
// validate refuses it too.
func TestModbusConfigErrorsNameThePLC(t *testing.T) {
	cases := []struct {
		name, tag, want string
	}{
		{"notation digit", `{name: t, address: "50001", type: int16}`,
			`plcs[0].tags[0].address: address "50001": in notation the first digit is 0 (coil), 1 (discrete), 3 (input) or 4 (holding)`},
		{"beyond notation", `{name: t, address: "70000", type: int16}`, `plcs[0].tags[0].address: address "70000"`},
		{"past the end", `{name: t, address: "65535", register: holding, type: float32}`,
			"plcs[0].tags[0].address: float32 at holding 65535 runs past address 65535 (line 5)"},
		{"coil as int16", `{name: t, address: "1", register: coil, type: int16}`,
			"plcs[0].tags[0].type: coil registers hold bits: the type must be bool, not int16 (line 5)"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			src := "producer: {brokers: [\"127.0.0.1:1\"]}\nplcs:\n  - {name: bad, driver: modbus, endpoint: \"127.0.0.1:1\",\n     tags: [\n       " + c.tag + "]}\n"
			_, err := config.Parse([]byte(src), "test config")
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want one containing %q", err, c.want)
			}
		})
	}
}

// TestPLCStatesInReady: /ready shows a PLC whose reads all succeed as ok,
// one whose reads partly fail as degraded and one that never answers as
// down, each failing one with since when and its last error; a failing
// PLC does not make the gateway unready.
func TestPLCStatesInReady(t *testing.T) {
	checkLeaks(t)
	endpoint, _ := serveModbus(t)
	cfg := modbusConfig(t, t.TempDir(), endpoint, newCluster(t).ListenAddrs()[0], `  - name: half
    driver: modbus
    endpoint: `+endpoint+`
    unit_id: 1
    poll_interval: 20ms
    timeout: 100ms
    tags:
      - {name: speed, address: "40001", type: float32, byte_order: CDAB}
      - {name: missing, address: "49001", type: int16}
`)
	a, stop := startAgent(t, cfg)
	want := []struct {
		name  string
		state telemetry.State
		words []string
	}{
		{"source/modbus:pump", telemetry.StateOK, []string{"running"}},
		{"source/modbus:half", telemetry.StateDegraded, []string{"1 of 2 tags failing (missing) since", "last error at", "illegal data address"}},
		{"source/modbus:dead", telemetry.StateDown, []string{"every read failed for", "polls in a row since", "last error at"}},
	}
	waitForOr(t, "each PLC's state in /ready", func() bool {
		got := map[string]telemetry.ComponentStatus{}
		for _, c := range a.Health().Snapshot() {
			got[c.Name] = c
		}
		for _, w := range want {
			c := got[w.name]
			if c.State != w.state {
				return false
			}
			for _, word := range w.words {
				if !strings.Contains(c.Detail, word) {
					return false
				}
			}
		}
		return true
	}, func() {
		for _, c := range a.Health().Snapshot() {
			t.Logf("%s %s: %s", c.Name, c.State, c.Detail)
		}
	})
	if !a.Health().Ready() {
		t.Fatalf("a failing PLC made the gateway unready: %+v", a.Health().Snapshot())
	}
	for _, c := range a.Health().Snapshot() {
		t.Logf("%s %s: %s", c.Name, c.State, c.Detail)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
}
