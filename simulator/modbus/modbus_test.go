package modbus

import (
	"bytes"
	"context"
	"encoding/hex"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	mb "github.com/iot-producer/iot-producer/drivers/modbus"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestCRC16KnownFrame(t *testing.T) {
	// The Modbus serial line guide's example: read 10 holding registers
	// from unit 1 is 01 03 00 00 00 0A C5 CD.
	req, _ := hex.DecodeString("01030000000a")
	c := crc16(req)
	if got := []byte{byte(c), byte(c >> 8)}; !bytes.Equal(got, []byte{0xc5, 0xcd}) {
		t.Fatalf("crc16 = % x, want c5 cd", got)
	}
}

func TestBankAnswers(t *testing.T) {
	b := NewBank()
	b.AddUnit(1, Sizes{Coils: 10, Discrete: 3, Holding: 4, Input: 2})
	if err := b.SetRegisters(1, mb.Holding, 1, []byte{0x12, 0x34, 0xab, 0xcd}); err != nil {
		t.Fatal(err)
	}
	for _, a := range []uint16{0, 2, 9} {
		if err := b.SetBit(1, mb.Coil, a, true); err != nil {
			t.Fatal(err)
		}
	}
	cases := []struct {
		name, req, want string
	}{
		{"holding", "0300010002", "0304" + "1234abcd"},
		{"input zero", "0400000002", "0404" + "00000000"},
		{"coils packed LSB first", "010000000a", "0102" + "0502"},
		{"past the end", "0300030002", "8302"},
		{"quantity 0", "0300000000", "8303"},
		{"quantity 126", "030000007e", "8303"},
		{"coils 2001", "01000007d1", "8103"},
		{"write refused", "0600000001", "8601"},
		{"short request", "030000", "8303"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			req, _ := hex.DecodeString(c.req)
			got, ok := b.read(1, req, nil)
			if !ok || hex.EncodeToString(got) != c.want {
				t.Fatalf("read(%s) = %x, %v; want %s", c.req, got, ok, c.want)
			}
		})
	}
	if _, ok := b.read(2, []byte{3, 0, 0, 0, 1}, nil); ok {
		t.Fatal("unknown unit answered")
	}
	if err := b.SetRegisters(1, mb.Holding, 3, []byte{0, 1, 0, 2}); err == nil {
		t.Fatal("SetRegisters past the end: no error")
	}
	if err := b.SetBit(1, mb.Holding, 0, true); err == nil {
		t.Fatal("SetBit on holding: no error")
	}
}

func TestMaxConnsRejectsTheSecondConnection(t *testing.T) {
	b := NewBank()
	b.AddUnit(1, Sizes{Holding: 1})
	srv := NewServer(b, ServerOptions{MaxConns: 1})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.ServeTCP(ctx, ln) }()
	defer func() { cancel(); <-done }()

	c1, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c1.Close()
	// A request on the first connection proves it was accepted.
	req, _ := hex.DecodeString("000100000006" + "01" + "0300000001")
	if _, err := c1.Write(req); err != nil {
		t.Fatal(err)
	}
	ans := make([]byte, 11)
	if _, err := io.ReadFull(c1, ans); err != nil {
		t.Fatal(err)
	}
	if got := hex.EncodeToString(ans); got != "000100000005010302"+"0000" {
		t.Fatalf("answer %s", got)
	}
	c2, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	_ = c2.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c2.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("second connection: read %v, want EOF (closed by the server)", err)
	}
	if st := srv.Stats(); st.Accepted != 1 || st.Rejected != 1 || st.Peak != 1 {
		t.Fatalf("stats %+v", st)
	}
}

func TestRTUFramingOnAPty(t *testing.T) {
	b := NewBank()
	b.AddUnit(5, Sizes{Holding: 2})
	_ = b.SetRegisters(5, mb.Holding, 0, []byte{0xbe, 0xef, 0x00, 0x01})
	srv := NewServer(b, ServerOptions{})
	master, slave, err := OpenPty()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.ServeRTU(ctx, master) }()
	defer func() { cancel(); <-done }()
	f, err := openRaw(slave)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()

	send := func(hexFrame string, withCRC bool) {
		t.Helper()
		fr, _ := hex.DecodeString(hexFrame)
		if withCRC {
			c := crc16(fr)
			fr = append(fr, byte(c), byte(c>>8))
		}
		if _, err := f.Write(fr); err != nil {
			t.Fatal(err)
		}
	}
	// waitStats waits (bounded) until the server has dealt with a frame,
	// so that the next one is not sent while it still drains the line.
	waitStats := func(what string, done func(Stats) bool) {
		t.Helper()
		for deadline := time.Now().Add(time.Minute); !done(srv.Stats()); {
			if time.Now().After(deadline) {
				t.Fatalf("the server did not handle %s: %+v", what, srv.Stats())
			}
			time.Sleep(time.Millisecond) // polling the server's counters
		}
	}
	// A frame with a bad CRC and one for another unit get no answer; the
	// good one after them does.
	send("0503000000020000", false)
	waitStats("the bad frame", func(st Stats) bool { return st.BadFrames == 1 })
	send("060300000002", true)
	waitStats("the frame for unit 6", func(st Stats) bool { return st.Requests[6] == 1 })
	send("050300000002", true)
	want, _ := hex.DecodeString("050304beef0001")
	c := crc16(want)
	want = append(want, byte(c), byte(c>>8))
	got := make([]byte, len(want))
	_ = f.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(f, got); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("answer % x, want % x", got, want)
	}
	if st := srv.Stats(); st.Requests[5] != 1 || st.Requests[6] != 1 {
		t.Fatalf("requests %+v: want one each from units 5 and 6 (the bad CRC dropped)", st.Requests)
	}
}

func TestParseMapAndSimulate(t *testing.T) {
	opts, err := ParseMap([]byte(`
interval: 10ms
seed: 3
units:
  - id: 2
    points:
      - {name: speed, address: "40001", type: float32, byte_order: CDAB, signal: temperature}
      - {name: recipe, address: "40010", type: string(6), value: "IPA-42"}
      - {name: count, address: "30001", type: uint32, value: 4000000000}
      - {name: temp, address: "30003", type: int16, value: 21.5, scale: 0.1}
      - {name: running, address: "3", register: coil, value: true}
`))
	if err != nil {
		t.Fatal(err)
	}
	s, err := NewSimulator(opts)
	if err != nil {
		t.Fatal(err)
	}
	read := func(req string) string {
		r, _ := hex.DecodeString(req)
		got, ok := s.Bank().read(2, r, nil)
		if !ok {
			t.Fatalf("no answer to %s", req)
		}
		return hex.EncodeToString(got)
	}
	if got := read("0300090003"); got != "0306"+hex.EncodeToString([]byte("IPA-42")) {
		t.Errorf("recipe: %s", got)
	}
	if got := read("0400000003"); got != "0406"+"ee6b2800"+"00d7" {
		t.Errorf("count and scaled temp: %s", got)
	}
	if got := read("0100030001"); got != "010101" {
		t.Errorf("coil: %s", got)
	}
	before := read("0300000002")
	for i := 1; i <= 5 && read("0300000002") == before; i++ {
		s.Update(time.Now().Add(time.Duration(i) * time.Second))
	}
	if read("0300000002") == before {
		t.Error("the speed signal never changed")
	}

	for _, bad := range []string{
		"units: [{id: 300}]",
		"units: [{id: 1, points: [{name: a, address: \"50001\", type: int16}]}]",
		"units: [{id: 1, points: [{name: a, address: \"40001\", type: float}]}]",
		"units: [{id: 1, points: [{name: a, address: \"40001\", type: int16, value: abc}]}]",
		"unknown_key: 1",
	} {
		if _, err := ParseMap([]byte(bad)); err == nil {
			t.Errorf("ParseMap(%q): no error", bad)
		}
	}
	if _, err := NewSimulator(SimOptions{Units: []Unit{{ID: 1, Points: []Point{{Name: "x", Type: mb.Type{Base: mb.Int16}, Signal: "warp"}}}}}); err == nil || !strings.Contains(err.Error(), "warp") {
		t.Errorf("unknown signal: %v", err)
	}
}
