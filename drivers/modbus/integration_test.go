package modbus_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/iot-producer/iot-producer/drivers"
	mb "github.com/iot-producer/iot-producer/drivers/modbus"
	sim "github.com/iot-producer/iot-producer/simulator/modbus"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// matrix returns points covering every type in every byte order, plus
// coils, discrete inputs, a bit in a register and a scaled value, and the
// tags that read them with the values they must decode to.
func matrix(t *testing.T) ([]sim.Point, []mb.Tag, map[string]drivers.Value) {
	t.Helper()
	values := []struct {
		typ string
		v   drivers.Value
	}{
		{"int16", drivers.Int(-12345)},
		{"uint16", drivers.Uint(54321)},
		{"int32", drivers.Int(-123456789)},
		{"uint32", drivers.Uint(3000000000)},
		{"int64", drivers.Int(-1234567890123456789)},
		{"uint64", drivers.Uint(18000000000000000000)},
		{"float32", drivers.Float(123.456)}, // read back as its shortest decimal
		{"float64", drivers.Float(-9876.54321)},
		{"string(10)", drivers.String("PLC-Line-1")},
		{"string(5)", drivers.String("odd")},
		{"bool", drivers.Bool(true)},
	}
	var points []sim.Point
	var tags []mb.Tag
	want := map[string]drivers.Value{}
	addr := uint16(0)
	for _, v := range values {
		typ, err := mb.ParseType(v.typ)
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range mb.ByteOrders {
			name := fmt.Sprintf("%s_%s", v.typ, o)
			points = append(points, sim.Point{Name: name, Register: mb.Holding, Address: addr, Type: typ, Order: o, Value: v.v})
			tags = append(tags, mb.Tag{Name: name, Register: mb.Holding, Address: addr, Type: typ, Order: o, Bit: -1})
			want[name] = v.v
			addr += uint16(typ.Registers())
		}
	}
	// A register with bits 0 and 3 set, read bit by bit.
	u16 := mb.Type{Base: mb.Uint16}
	boolT := mb.Type{Base: mb.Bool}
	points = append(points, sim.Point{Name: "flags", Register: mb.Input, Address: 7, Type: u16, Value: drivers.Uint(0b1001)})
	for _, b := range []int{0, 1, 3} {
		name := fmt.Sprintf("flag%d", b)
		tags = append(tags, mb.Tag{Name: name, Register: mb.Input, Address: 7, Type: boolT, Bit: b})
		want[name] = drivers.Bool(b != 1)
	}
	// A scaled input register: raw 2215 * 0.1 - 10 = 211.5.
	points = append(points, sim.Point{Name: "temp", Register: mb.Input, Address: 8, Type: mb.Type{Base: mb.Int16}, Value: drivers.Int(2215)})
	tags = append(tags, mb.Tag{Name: "temp", Register: mb.Input, Address: 8, Type: mb.Type{Base: mb.Int16}, Bit: -1, Scale: 0.1, Offset: -10})
	want["temp"] = drivers.Float(2215*0.1 - 10)
	for i, on := range []bool{true, false, true} {
		for _, reg := range []mb.RegisterType{mb.Coil, mb.Discrete} {
			name := fmt.Sprintf("%s%d", reg, i)
			a := uint16(10 + 3*i) // gaps between bits
			points = append(points, sim.Point{Name: name, Register: reg, Address: a, Type: boolT, Value: drivers.Bool(on)})
			tags = append(tags, mb.Tag{Name: name, Register: reg, Address: a, Type: boolT, Bit: -1})
			want[name] = drivers.Bool(on)
		}
	}
	return points, tags, want
}

// newServer builds a simulator with the given units and returns it.
func newServer(t *testing.T, opts sim.ServerOptions, units ...sim.Unit) (*sim.Server, *sim.Simulator) {
	t.Helper()
	s, err := sim.NewSimulator(sim.SimOptions{Units: units})
	if err != nil {
		t.Fatal(err)
	}
	return sim.NewServer(s.Bank(), opts), s
}

// serveTCP serves srv on a loopback port until the test ends.
func serveTCP(t *testing.T, srv *sim.Server) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.ServeTCP(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("ServeTCP: %v", err)
		}
	})
	return ln.Addr().String()
}

// collector runs a driver and collects its batches.
type collector struct {
	batches chan []drivers.Sample
	mu      sync.Mutex
	kinds   map[string]int
}

func (c *collector) count(kind string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.kinds[kind]
}

// run starts a driver built from opts (with a pool and OnError filled in
// when unset) and stops it when the test ends, checking that Run returns
// nil.
func run(t *testing.T, opts mb.Options) *collector {
	t.Helper()
	c := &collector{batches: make(chan []drivers.Sample, 1000), kinds: map[string]int{}}
	if opts.Pool == nil {
		opts.Pool = mb.NewPool(mb.PoolOptions{})
	}
	opts.OnError = func(kind string) {
		c.mu.Lock()
		c.kinds[kind]++
		c.mu.Unlock()
	}
	d, err := mb.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx, func(s []drivers.Sample) { c.batches <- s }) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run returned %v after cancel, want nil", err)
			}
		case <-time.After(5 * time.Second):
			t.Error("Run did not return within 5s of cancel")
		}
	})
	return c
}

// next returns the next batch within limit.
func (c *collector) next(t *testing.T, limit time.Duration) []drivers.Sample {
	t.Helper()
	select {
	case b := <-c.batches:
		return b
	case <-time.After(limit):
		t.Fatalf("no batch within %s", limit)
		return nil
	}
}

// checkValues checks that batch holds exactly the tags of want, with good
// quality and the wanted values.
func checkValues(t *testing.T, batch []drivers.Sample, want map[string]drivers.Value) {
	t.Helper()
	if len(batch) != len(want) {
		t.Errorf("batch has %d samples, want %d", len(batch), len(want))
	}
	for _, s := range batch {
		w, ok := want[s.Tag]
		switch {
		case !ok:
			t.Errorf("unexpected tag %s", s.Tag)
		case s.Quality != drivers.QualityGood:
			t.Errorf("%s: quality %s", s.Tag, s.Quality)
		case s.Value.Kind == drivers.KindFloat && w.Kind == drivers.KindFloat && math.Abs(s.Value.F-w.F) < 1e-9:
		case !s.Value.Equal(w):
			t.Errorf("%s = %+v, want %+v", s.Tag, s.Value, w)
		}
	}
}

func TestEveryTypeAndOrderOverTCP(t *testing.T) {
	points, tags, want := matrix(t)
	srv, _ := newServer(t, sim.ServerOptions{}, sim.Unit{ID: 1, Points: points})
	addr := serveTCP(t, srv)
	c := run(t, mb.Options{Name: "plc", Endpoint: mb.Endpoint{Address: addr}, Unit: 1, Interval: time.Hour, Tags: tags, MaxGap: 4})
	checkValues(t, c.next(t, 5*time.Second), want)
	// Holding (1 request: 168 registers need 2), input (1), coils (1) and
	// discrete inputs (1): coalescing must keep it to a handful.
	st := srv.Stats()
	if n := st.Requests[1]; n > 5 {
		t.Errorf("one poll sent %d requests, want at most 5", n)
	}
}

// TestEveryTypeAndOrderAgainstSimonvetter reads the same map through
// github.com/simonvetter/modbus's TCP server: framing written by others.
func TestEveryTypeAndOrderAgainstSimonvetter(t *testing.T) {
	points, tags, want := matrix(t)
	s, err := sim.NewSimulator(sim.SimOptions{Units: []sim.Unit{{ID: 3, Points: points}}})
	if err != nil {
		t.Fatal(err)
	}
	addr := freePort(t)
	srv, err := sim.NewSimonvetterServer(addr, s.Bank())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Stop() })
	c := run(t, mb.Options{Name: "sv", Endpoint: mb.Endpoint{Address: addr}, Unit: 3, Interval: time.Hour, Tags: tags, MaxGap: 4})
	checkValues(t, c.next(t, 5*time.Second), want)
}

func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func TestEveryTypeAndOrderRTUOverTCP(t *testing.T) {
	points, tags, want := matrix(t)
	srv, _ := newServer(t, sim.ServerOptions{}, sim.Unit{ID: 9, Points: points})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.ServeRTUOverTCP(ctx, ln) }()
	t.Cleanup(func() { cancel(); <-done })
	c := run(t, mb.Options{Name: "gw", Endpoint: mb.Endpoint{Transport: mb.RTUOverTCP, Address: ln.Addr().String()}, Unit: 9, Interval: time.Hour, Tags: tags, MaxGap: 4})
	checkValues(t, c.next(t, 5*time.Second), want)
}

func TestEveryTypeAndOrderRTUOverPty(t *testing.T) {
	points, tags, want := matrix(t)
	srv, _ := newServer(t, sim.ServerOptions{}, sim.Unit{ID: 17, Points: points}, sim.Unit{ID: 18, Points: points})
	dev := servePty(t, srv)
	pool := mb.NewPool(mb.PoolOptions{})
	ep := mb.Endpoint{Transport: mb.RTU, Address: dev, Serial: mb.Serial{BaudRate: 115200, Parity: "N", StopBits: 2}}
	c1 := run(t, mb.Options{Name: "rtu17", Endpoint: ep, Unit: 17, Interval: time.Hour, Tags: tags, MaxGap: 4, Pool: pool})
	c2 := run(t, mb.Options{Name: "rtu18", Endpoint: ep, Unit: 18, Interval: time.Hour, Tags: tags, MaxGap: 4, Pool: pool})
	checkValues(t, c1.next(t, 5*time.Second), want)
	checkValues(t, c2.next(t, 5*time.Second), want)
}

// servePty serves srv's RTU on the master of a new pty and returns the
// slave's path, which the test also holds open so that the driver may
// close and reopen it.
func servePty(t *testing.T, srv *sim.Server) string {
	t.Helper()
	master, slavePath, err := sim.OpenPty()
	if err != nil {
		t.Fatal(err)
	}
	hold, err := os.OpenFile(slavePath, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := sim.MakeRaw(hold); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.ServeRTU(ctx, master) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("ServeRTU: %v", err)
		}
		hold.Close()
	})
	return slavePath
}

func TestExceptionGivesBadQualityAndCount(t *testing.T) {
	u16 := mb.Type{Base: mb.Uint16}
	pts := []sim.Point{{Name: "a", Address: 0, Type: u16, Value: drivers.Uint(1)}}
	srv, _ := newServer(t, sim.ServerOptions{}, sim.Unit{ID: 1, Points: pts})
	srv.SetFaults(1, sim.Faults{Exception: 4})
	addr := serveTCP(t, srv)
	tags := []mb.Tag{{Name: "a", Type: u16, Bit: -1}}
	c := run(t, mb.Options{Name: "exc", Endpoint: mb.Endpoint{Address: addr}, Unit: 1, Interval: time.Hour, Tags: tags})
	b := c.next(t, 5*time.Second)
	if len(b) != 1 || b[0].Quality != drivers.QualityBad || b[0].Tag != "a" || b[0].Status != "ServerDeviceFailure" {
		t.Fatalf("batch %+v, want one bad sample of a, status ServerDeviceFailure", b)
	}
	if c.count(mb.KindException) != 1 {
		t.Fatalf("exception errors = %d, want 1", c.count(mb.KindException))
	}

	// With DropOnError the failed read gives no sample at all; an empty
	// poll emits nothing.
	c2 := run(t, mb.Options{Name: "exc2", Endpoint: mb.Endpoint{Address: addr}, Unit: 1, Interval: 20 * time.Millisecond, Tags: tags, DropOnError: true})
	waitFor(t, func() bool { return c2.count(mb.KindException) >= 3 })
	select {
	case b := <-c2.batches:
		t.Fatalf("DropOnError emitted %+v", b)
	default:
	}
}

// TestMalformedAnswersAreCountedAndRecovered: a broken answer (wrong byte
// count on TCP, wrong CRC on RTU) gives bad samples and a malformed error,
// and the next good answer is read correctly.
func TestMalformedAnswersAreCountedAndRecovered(t *testing.T) {
	u16 := mb.Type{Base: mb.Uint16}
	pts := []sim.Point{{Name: "a", Address: 0, Type: u16, Value: drivers.Uint(42)}}
	for _, transport := range []mb.Transport{mb.TCP, mb.RTU} {
		t.Run(transport.String(), func(t *testing.T) {
			srv, _ := newServer(t, sim.ServerOptions{}, sim.Unit{ID: 1, Points: pts})
			srv.SetFaults(1, sim.Faults{Malformed: true})
			ep := mb.Endpoint{Transport: transport}
			if transport == mb.TCP {
				ep.Address = serveTCP(t, srv)
			} else {
				ep.Address = servePty(t, srv)
				ep.Serial = mb.Serial{BaudRate: 115200}
			}
			c := run(t, mb.Options{Name: "broken", Endpoint: ep, Unit: 1, Interval: 20 * time.Millisecond, Timeout: 200 * time.Millisecond,
				Tags: []mb.Tag{{Name: "a", Type: u16, Bit: -1}}})
			if b := c.next(t, 5*time.Second); b[0].Quality != drivers.QualityBad {
				t.Fatalf("malformed answer gave %+v", b)
			}
			if c.count(mb.KindMalformed) < 1 {
				t.Fatal("no malformed error counted")
			}
			srv.SetFaults(1, sim.Faults{})
			deadline := time.Now().Add(5 * time.Second)
			for {
				b := c.next(t, 5*time.Second)
				if b[0].Quality == drivers.QualityGood {
					checkValues(t, b, map[string]drivers.Value{"a": drivers.Uint(42)})
					return
				}
				if time.Now().After(deadline) {
					t.Fatal("no good answer within 5s of the device recovering")
				}
			}
		})
	}
}

func TestBusyIsRetriedWithinTheInterval(t *testing.T) {
	u16 := mb.Type{Base: mb.Uint16}
	pts := []sim.Point{{Name: "a", Address: 0, Type: u16, Value: drivers.Uint(7)}}
	srv, _ := newServer(t, sim.ServerOptions{}, sim.Unit{ID: 1, Points: pts})
	srv.SetFaults(1, sim.Faults{Busy: 2})
	addr := serveTCP(t, srv)
	c := run(t, mb.Options{Name: "busy", Endpoint: mb.Endpoint{Address: addr}, Unit: 1, Interval: time.Hour,
		Tags: []mb.Tag{{Name: "a", Type: u16, Bit: -1}}})
	checkValues(t, c.next(t, 5*time.Second), map[string]drivers.Value{"a": drivers.Uint(7)})
	if c.count(mb.KindBusy) != 2 {
		t.Fatalf("busy answers = %d, want 2", c.count(mb.KindBusy))
	}
}

func TestIllegalAddressInGapSplitsTheRequest(t *testing.T) {
	u16 := mb.Type{Base: mb.Uint16}
	// The holding table ends at 6: a read of 0-8 (three tags joined) is
	// refused with exception 2, and so is c alone, but a and b are fine.
	pts := []sim.Point{
		{Name: "a", Address: 0, Type: u16, Value: drivers.Uint(1)},
		{Name: "b", Address: 5, Type: u16, Value: drivers.Uint(2)},
	}
	srv, _ := newServer(t, sim.ServerOptions{}, sim.Unit{ID: 1, Points: pts})
	addr := serveTCP(t, srv)
	tags := []mb.Tag{{Name: "a", Address: 0, Type: u16, Bit: -1}, {Name: "b", Address: 5, Type: u16, Bit: -1}, {Name: "c", Address: 8, Type: u16, Bit: -1}}
	c := run(t, mb.Options{Name: "gap", Endpoint: mb.Endpoint{Address: addr}, Unit: 1, Interval: time.Hour, Tags: tags, MaxGap: 10})
	b := c.next(t, 5*time.Second)
	got := map[string]drivers.Sample{}
	for _, s := range b {
		got[s.Tag] = s
	}
	if got["a"].Quality != drivers.QualityGood || got["b"].Quality != drivers.QualityGood || !got["b"].Value.Equal(drivers.Uint(2)) {
		t.Fatalf("a and b must be read one by one after the coalesced read failed: %+v", b)
	}
	if got["c"].Quality != drivers.QualityBad || got["c"].Status != "IllegalDataAddress" {
		t.Fatalf("c is past the table: want bad quality, status IllegalDataAddress, got %+v", got["c"])
	}
}

// TestTransactionIDDriftRecoveredWithinOnePoll: a slow answer that arrives
// after the timeout, and a late duplicate of every answer, must never be
// read as the answer to a later request.
func TestTransactionIDDriftRecoveredWithinOnePoll(t *testing.T) {
	u16 := mb.Type{Base: mb.Uint16}
	pts := []sim.Point{{Name: "a", Address: 0, Type: u16, Value: drivers.Uint(11)}, {Name: "b", Address: 50, Type: u16, Value: drivers.Uint(22)}}
	srv, _ := newServer(t, sim.ServerOptions{}, sim.Unit{ID: 1, Points: pts})
	srv.SetFaults(1, sim.Faults{Delay: 300 * time.Millisecond})
	addr := serveTCP(t, srv)
	tags := []mb.Tag{{Name: "a", Address: 0, Type: u16, Bit: -1}, {Name: "b", Address: 50, Type: u16, Bit: -1}}
	c := run(t, mb.Options{Name: "drift", Endpoint: mb.Endpoint{Address: addr}, Unit: 1, Interval: 100 * time.Millisecond,
		Timeout: 100 * time.Millisecond, Tags: tags})
	b := c.next(t, 5*time.Second)
	for _, s := range b {
		if s.Quality != drivers.QualityBad || s.Status != "Timeout" {
			t.Fatalf("slow device: want bad samples of status Timeout, got %+v", b)
		}
	}
	// The device recovers but now sends every answer twice. Polls read
	// before the switch (still queued) do not count.
	srv.SetFaults(1, sim.Faults{DuplicateAfter: 5 * time.Millisecond})
	switched := time.Now()
	acceptedAtRecovery := 0
	want := map[string]drivers.Value{"a": drivers.Uint(11), "b": drivers.Uint(22)}
	good := 0
	deadline := time.Now().Add(5 * time.Second)
	bad := 0
	for good < 10 && time.Now().Before(deadline) {
		b := c.next(t, 5*time.Second)
		if b[0].ReadTime.Before(switched) {
			continue
		}
		allGood := true
		for _, s := range b {
			if s.Quality != drivers.QualityGood {
				allGood = false
			} else if !s.Value.Equal(want[s.Tag]) {
				t.Fatalf("%s = %+v: a late answer was taken for another request's", s.Tag, s.Value)
			}
		}
		if allGood {
			if good == 0 {
				acceptedAtRecovery = srv.Stats().Accepted
			}
			good++
		} else if good > 0 {
			t.Fatalf("bad poll after recovery: %+v", b)
		} else {
			bad++
		}
	}
	if good < 10 {
		t.Fatalf("only %d good polls", good)
	}
	if bad > 1 {
		t.Fatalf("%d bad polls after the device recovered, want at most 1 (recovery within one poll)", bad)
	}
	// The duplicates were skipped by transaction id, not cured by
	// reconnecting: no connection was opened after the first good poll.
	if n := srv.Stats().Accepted; n != acceptedAtRecovery {
		t.Fatalf("%d connections opened while answers came twice: duplicates caused reconnects", n-acceptedAtRecovery)
	}
}

// TestSingleConnectionDeviceSeesOneConnection: several drivers (unit ids)
// on one endpoint share one connection, also across reconnects.
func TestSingleConnectionDeviceSeesOneConnection(t *testing.T) {
	u16 := mb.Type{Base: mb.Uint16}
	pts := []sim.Point{{Name: "a", Address: 0, Type: u16, Value: drivers.Uint(5)}}
	var units []sim.Unit
	for id := uint8(1); id <= 4; id++ {
		units = append(units, sim.Unit{ID: id, Points: pts})
	}
	srv, _ := newServer(t, sim.ServerOptions{MaxConns: 1}, units...)
	addr := serveTCP(t, srv)
	pool := mb.NewPool(mb.PoolOptions{})
	var cs []*collector
	for id := uint8(1); id <= 4; id++ {
		cs = append(cs, run(t, mb.Options{Name: fmt.Sprintf("u%d", id), Endpoint: mb.Endpoint{Address: addr}, Unit: id,
			Interval: 10 * time.Millisecond, Tags: []mb.Tag{{Name: "a", Type: u16, Bit: -1}}, Pool: pool}))
	}
	for _, c := range cs {
		for range 10 {
			checkValues(t, c.next(t, 5*time.Second), map[string]drivers.Value{"a": drivers.Uint(5)})
		}
	}
	st := srv.Stats()
	if st.Peak != 1 || st.Rejected != 0 || st.Accepted != 1 {
		t.Fatalf("server saw %+v, want exactly one connection", st)
	}
}

// TestDeadUnitDoesNotStarveNeighbours: unit 2 behind the same gateway
// stops answering. Each of its timeouts holds the shared connection, so
// without demotion unit 1 would get about one poll per timeout; demoted,
// unit 2 is polled less and less often and unit 1 many times per timeout.
// The test counts polls against timeouts, not against the clock, so a
// loaded machine slows both alike.
func TestDeadUnitDoesNotStarveNeighbours(t *testing.T) {
	u16 := mb.Type{Base: mb.Uint16}
	pts := []sim.Point{{Name: "a", Address: 0, Type: u16, Value: drivers.Uint(5)}}
	srv, _ := newServer(t, sim.ServerOptions{MaxConns: 1}, sim.Unit{ID: 1, Points: pts}, sim.Unit{ID: 2, Points: pts})
	srv.SetFaults(2, sim.Faults{Silent: true})
	addr := serveTCP(t, srv)
	pool := mb.NewPool(mb.PoolOptions{})
	tags := []mb.Tag{{Name: "a", Type: u16, Bit: -1}}
	const interval = 50 * time.Millisecond
	healthy := run(t, mb.Options{Name: "healthy", Endpoint: mb.Endpoint{Address: addr}, Unit: 1, Interval: interval, Timeout: 200 * time.Millisecond, Tags: tags, Pool: pool})
	dead := run(t, mb.Options{Name: "dead", Endpoint: mb.Endpoint{Address: addr}, Unit: 2, Interval: interval, Timeout: 200 * time.Millisecond, Tags: tags, Pool: pool})
	waitFor(t, func() bool { return dead.count(mb.KindTimeout) >= 3 }) // demoted from here on
	for len(healthy.batches) > 0 {
		<-healthy.batches
	}
	before := dead.count(mb.KindTimeout)
	const polls = 60
	good := 0
	for good < polls {
		for _, s := range healthy.next(t, 5*time.Second) {
			if s.Quality == drivers.QualityGood {
				good++
			}
		}
	}
	timeouts := dead.count(mb.KindTimeout) - before
	healthy.mu.Lock()
	t.Logf("healthy unit: %d good polls while the dead unit timed out %d times (errors %v); server %+v", good, timeouts, healthy.kinds, srv.Stats())
	healthy.mu.Unlock()
	if timeouts > 0 && good < 4*timeouts {
		t.Fatalf("healthy unit polled %d times while the dead unit timed out %d times: want at least 4 polls per timeout (it was not demoted)", good, timeouts)
	}
}

func TestConnectFailureBacksOffAndRecovers(t *testing.T) {
	addr := freePort(t)
	u16 := mb.Type{Base: mb.Uint16}
	c := run(t, mb.Options{Name: "later", Endpoint: mb.Endpoint{Address: addr, ConnectTimeout: 100 * time.Millisecond}, Unit: 1,
		Interval: 20 * time.Millisecond, Tags: []mb.Tag{{Name: "a", Type: u16, Bit: -1}},
		Pool: mb.NewPool(mb.PoolOptions{BackoffMin: 50 * time.Millisecond, BackoffMax: 100 * time.Millisecond})})
	b := c.next(t, 5*time.Second)
	if b[0].Quality != drivers.QualityBad {
		t.Fatalf("no server: want a bad sample, got %+v", b)
	}
	waitFor(t, func() bool { return c.count(mb.KindUnavailable) > 0 })
	connects := c.count(mb.KindConnect)
	// Start the device on that port: the driver must find it.
	pts := []sim.Point{{Name: "a", Address: 0, Type: u16, Value: drivers.Uint(9)}}
	srv, _ := newServer(t, sim.ServerOptions{}, sim.Unit{ID: 1, Points: pts})
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.ServeTCP(ctx, ln) }()
	t.Cleanup(func() { cancel(); <-done })
	deadline := time.Now().Add(5 * time.Second)
	for {
		b := c.next(t, 5*time.Second)
		if b[0].Quality == drivers.QualityGood && b[0].Value.Equal(drivers.Uint(9)) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("driver did not reconnect within 5s")
		}
	}
	if connects < 1 {
		t.Fatalf("connect errors = %d, want at least 1", connects)
	}
}

func TestRunReturnsNilOnCancelDuringSlowRequest(t *testing.T) {
	u16 := mb.Type{Base: mb.Uint16}
	pts := []sim.Point{{Name: "a", Address: 0, Type: u16, Value: drivers.Uint(9)}}
	srv, _ := newServer(t, sim.ServerOptions{}, sim.Unit{ID: 1, Points: pts})
	srv.SetFaults(1, sim.Faults{Delay: 2 * time.Second})
	addr := serveTCP(t, srv)
	d, err := mb.New(mb.Options{Name: "slow", Endpoint: mb.Endpoint{Address: addr}, Unit: 1, Timeout: 10 * time.Second,
		Tags: []mb.Tag{{Name: "a", Type: u16, Bit: -1}}, Pool: mb.NewPool(mb.PoolOptions{})})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx, func([]drivers.Sample) {}) }()
	waitFor(t, func() bool { return srv.Stats().Requests[1] > 0 })
	start := time.Now()
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run = %v, want nil", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("Run took %s to return after cancel", d)
	}
}

func TestNewRejectsBadTags(t *testing.T) {
	pool := mb.NewPool(mb.PoolOptions{})
	base := mb.Options{Name: "x", Endpoint: mb.Endpoint{Address: "127.0.0.1:1"}, Pool: pool}
	cases := []struct {
		name string
		tags []mb.Tag
	}{
		{"none", nil},
		{"coil as float", []mb.Tag{{Name: "a", Register: mb.Coil, Type: mb.Type{Base: mb.Float32}, Bit: -1}}},
		{"bit on a float", []mb.Tag{{Name: "a", Type: mb.Type{Base: mb.Float32}, Bit: 3}}},
		{"bit 16", []mb.Tag{{Name: "a", Type: mb.Type{Base: mb.Bool}, Bit: 16}}},
		{"past 65535", []mb.Tag{{Name: "a", Address: 65535, Type: mb.Type{Base: mb.Float32}, Bit: -1}}},
		{"duplicate", []mb.Tag{{Name: "a", Type: mb.Type{Base: mb.Bool}, Bit: -1}, {Name: "a", Type: mb.Type{Base: mb.Bool}, Bit: -1}}},
	}
	for _, c := range cases {
		o := base
		o.Tags = c.tags
		if _, err := mb.New(o); err == nil {
			t.Errorf("%s: no error", c.name)
		}
	}
	if _, err := mb.New(mb.Options{Name: "x", Endpoint: mb.Endpoint{Address: "a:1"}, Tags: []mb.Tag{{Name: "a", Type: mb.Type{Base: mb.Bool}, Bit: -1}}}); err == nil {
		t.Error("no pool: no error")
	}
	for _, unit := range []uint8{0, 248} {
		o := base
		o.Endpoint = mb.Endpoint{Transport: mb.RTU, Address: "/dev/ttyS0"}
		o.Unit = unit
		o.Tags = []mb.Tag{{Name: "a", Type: mb.Type{Base: mb.Bool}, Bit: -1}}
		if _, err := mb.New(o); err == nil {
			t.Errorf("RTU unit %d: no error", unit)
		}
	}
}

func TestReadErrorNamesEverything(t *testing.T) {
	cases := []struct {
		kind string
		err  error
		want string
	}{
		{mb.KindTimeout, errors.New("i/o timeout"), "press-1 (tcp://10.0.0.5:502 unit 3): read input 100 (quantity 4): timeout: i/o timeout"},
		{mb.KindException, &mb.ExceptionError{Function: 0x04, Code: 0x0B},
			"press-1 (tcp://10.0.0.5:502 unit 3): read input 100 (quantity 4): exception 0x0B gateway target device failed to respond (function 0x04 read input registers): check the unit id, and the serial line and power of the device behind the gateway"},
		{mb.KindException, &mb.ExceptionError{Function: 0x04, Code: 0x02},
			"press-1 (tcp://10.0.0.5:502 unit 3): read input 100 (quantity 4): exception 0x02 illegal data address (function 0x04 read input registers): the device has no register at this address: check the address and its notation (0-based or 40001-style)"},
		{mb.KindUnavailable, fmt.Errorf("%w (next attempt in 3s; last: dial tcp 10.0.0.5:502: connect: connection refused)", mb.ErrUnavailable),
			"press-1 (tcp://10.0.0.5:502 unit 3): read input 100 (quantity 4): not sent: the connection failed and waits to be opened again (next attempt in 3s; last: dial tcp 10.0.0.5:502: connect: connection refused)"},
	}
	for _, c := range cases {
		e := &mb.ReadError{Device: "press-1", Endpoint: "tcp://10.0.0.5:502", Unit: 3, Register: mb.Input, Address: 100, Quantity: 4, Kind: c.kind, Err: c.err}
		if e.Error() != c.want {
			t.Errorf("%q\nwant %q", e.Error(), c.want)
		}
	}
}

// TestConnectErrorSaysItOnce: a refused connection reads "connect: dial
// tcp ...", not "connect: connect: dial tcp ...".
func TestConnectErrorSaysItOnce(t *testing.T) {
	addr := freePort(t)
	pool := mb.NewPool(mb.PoolOptions{BackoffMin: time.Hour, BackoffMax: time.Hour})
	ep := mb.Endpoint{Address: addr, ConnectTimeout: time.Second}
	_, err := pool.Read(context.Background(), ep, 1, mb.Holding, 0, 1, time.Second)
	if err == nil {
		t.Fatal("read from a closed port succeeded")
	}
	msg := err.Error()
	if !strings.Contains(msg, ": connect: dial tcp "+addr) || strings.Contains(msg, "connect: connect: dial") {
		t.Errorf("connect error %q: want the kind once, then the dial error", msg)
	}
}

// waitFor polls cond every 5ms for up to 10s.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 10s")
		}
		time.Sleep(5 * time.Millisecond) // polling a condition, not synchronising
	}
}

// BenchmarkReadTCP measures one request of 20 registers over loopback,
// through the pool, against the simulator in this process.
func BenchmarkReadTCP(b *testing.B) {
	pts := make([]sim.Point, 20)
	for i := range pts {
		pts[i] = sim.Point{Name: fmt.Sprint(i), Address: uint16(i), Type: mb.Type{Base: mb.Uint16}, Value: drivers.Uint(uint64(i))}
	}
	s, err := sim.NewSimulator(sim.SimOptions{Units: []sim.Unit{{ID: 1, Points: pts}}})
	if err != nil {
		b.Fatal(err)
	}
	srv := sim.NewServer(s.Bank(), sim.ServerOptions{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.ServeTCP(ctx, ln) }()
	defer func() { <-done }()
	pool := mb.NewPool(mb.PoolOptions{})
	ep := mb.Endpoint{Address: ln.Addr().String()}
	// A driver on the endpoint keeps its connection open between reads.
	d, err := mb.New(mb.Options{Name: "holder", Endpoint: ep, Unit: 1, Interval: time.Hour, Pool: pool,
		Tags: []mb.Tag{{Name: "a", Type: mb.Type{Base: mb.Uint16}, Bit: -1}}})
	if err != nil {
		b.Fatal(err)
	}
	first := make(chan struct{}, 1)
	runDone := make(chan error, 1)
	go func() {
		runDone <- d.Run(ctx, func([]drivers.Sample) {
			select {
			case first <- struct{}{}:
			default:
			}
		})
	}()
	defer func() { cancel(); <-runDone }()
	<-first
	b.ReportAllocs()
	for b.Loop() {
		if _, err := pool.Read(context.Background(), ep, 1, mb.Holding, 0, 20, time.Second); err != nil {
			b.Fatal(err)
		}
	}
}
