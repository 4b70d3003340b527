package modbus

import (
	"strings"
	"testing"
)

func TestParseAddress(t *testing.T) {
	cases := []struct {
		addr, register string
		wantReg        RegisterType
		wantAddr       uint16
		wantErr        string
	}{
		{"0", "", Holding, 0, ""},
		{"100", "", Holding, 100, ""},
		{"9999", "", Holding, 9999, ""},
		{"40001", "", Holding, 0, ""},
		{"40010", "", Holding, 9, ""},
		{"49999", "", Holding, 9998, ""},
		{"400001", "", Holding, 0, ""},
		{"465536", "", Holding, 65535, ""},
		{"30001", "", Input, 0, ""},
		{"300100", "", Input, 99, ""},
		{"00001", "", Coil, 0, ""},
		{"10001", "", Discrete, 0, ""},
		{"100020", "", Discrete, 19, ""},
		{"40001", "holding", Holding, 40001, ""},
		{"65535", "input", Input, 65535, ""},
		{"7", "coil", Coil, 7, ""},
		{"12", "discrete", Discrete, 12, ""},
		{"40000", "", 0, 0, "register number 0"},
		{"465537", "", 0, 0, "out of range"},
		{"20001", "", 0, 0, "first digit"},
		{"50000", "", 0, 0, "first digit"},
		{"65536", "holding", 0, 0, "0-based"},
		{"4000001", "", 0, 0, "too long"},
		{"4x", "", 0, 0, "digits only"},
		{"", "", 0, 0, "empty"},
		{"1", "register", 0, 0, "unknown register"},
	}
	for _, c := range cases {
		t.Run(c.addr+"/"+c.register, func(t *testing.T) {
			reg, addr, err := ParseAddress(c.addr, c.register)
			if c.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), c.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, c.wantErr)
				}
				return
			}
			if err != nil || reg != c.wantReg || addr != c.wantAddr {
				t.Fatalf("= %s %d %v, want %s %d", reg, addr, err, c.wantReg, c.wantAddr)
			}
		})
	}
}

func TestParseType(t *testing.T) {
	cases := []struct {
		in      string
		want    Type
		regs    int
		wantErr bool
	}{
		{"bool", Type{Base: Bool}, 1, false},
		{"int16", Type{Base: Int16}, 1, false},
		{"uint16", Type{Base: Uint16}, 1, false},
		{"int32", Type{Base: Int32}, 2, false},
		{"uint32", Type{Base: Uint32}, 2, false},
		{"float32", Type{Base: Float32}, 2, false},
		{"int64", Type{Base: Int64}, 4, false},
		{"uint64", Type{Base: Uint64}, 4, false},
		{"float64", Type{Base: Float64}, 4, false},
		{"string(1)", Type{Base: String, Len: 1}, 1, false},
		{"string(7)", Type{Base: String, Len: 7}, 4, false},
		{"string(250)", Type{Base: String, Len: 250}, 125, false},
		{"string(251)", Type{}, 0, true},
		{"string(0)", Type{}, 0, true},
		{"string", Type{}, 0, true},
		{"float", Type{}, 0, true},
	}
	for _, c := range cases {
		got, err := ParseType(c.in)
		if (err != nil) != c.wantErr || got != c.want || (err == nil && got.Registers() != c.regs) {
			t.Errorf("ParseType(%q) = %+v (%d registers), %v", c.in, got, got.Registers(), err)
		}
		if err == nil && got.String() != c.in {
			t.Errorf("ParseType(%q).String() = %q", c.in, got.String())
		}
	}
}

func TestParseByteOrderAndTransport(t *testing.T) {
	for _, o := range ByteOrders {
		got, err := ParseByteOrder(strings.ToLower(o.String()))
		if err != nil || got != o {
			t.Errorf("ParseByteOrder(%s) = %s, %v", o, got, err)
		}
	}
	if o, err := ParseByteOrder(""); err != nil || o != ABCD {
		t.Errorf("empty byte order = %s, %v; want ABCD", o, err)
	}
	if _, err := ParseByteOrder("ABDC"); err == nil {
		t.Error("ABDC: no error")
	}
	for _, c := range []struct {
		s, addr string
		want    Transport
	}{{"", "/dev/ttyUSB0", RTU}, {"", "10.0.0.1:502", TCP}, {"rtuovertcp", "gw:4001", RTUOverTCP}, {"rtu", "/dev/x", RTU}} {
		if got, err := ParseTransport(c.s, c.addr); err != nil || got != c.want {
			t.Errorf("ParseTransport(%q, %q) = %s, %v", c.s, c.addr, got, err)
		}
	}
	if _, err := ParseTransport("udp", "x"); err == nil {
		t.Error("udp: no error")
	}
}

func TestPlan(t *testing.T) {
	f32 := Type{Base: Float32}
	u16 := Type{Base: Uint16}
	b := Type{Base: Bool}
	type want struct {
		reg       RegisterType
		addr, qty uint16
		tags      int
	}
	cases := []struct {
		name    string
		tags    []Tag
		maxGap  int
		maxRegs int
		want    []want
	}{
		{"adjacent registers join", []Tag{{Address: 0, Type: f32}, {Address: 2, Type: f32}, {Address: 4, Type: u16}}, 0, 125,
			[]want{{Holding, 0, 5, 3}}},
		{"gap within max_gap joins", []Tag{{Address: 0, Type: u16}, {Address: 11, Type: u16}}, 10, 125,
			[]want{{Holding, 0, 12, 2}}},
		{"gap beyond max_gap splits", []Tag{{Address: 0, Type: u16}, {Address: 12, Type: u16}}, 10, 125,
			[]want{{Holding, 0, 1, 1}, {Holding, 12, 1, 1}}},
		{"unsorted tags are sorted", []Tag{{Address: 4, Type: u16}, {Address: 0, Type: f32}, {Address: 2, Type: f32}}, 0, 125,
			[]want{{Holding, 0, 5, 3}}},
		{"tables never mix", []Tag{{Address: 0, Type: u16}, {Register: Input, Address: 1, Type: u16}}, 10, 125,
			[]want{{Holding, 0, 1, 1}, {Input, 1, 1, 1}}},
		{"125-register limit", []Tag{{Address: 0, Type: u16}, {Address: 123, Type: f32}, {Address: 125, Type: u16}}, 200, 125,
			[]want{{Holding, 0, 125, 2}, {Holding, 125, 1, 1}}},
		{"max_registers limit", []Tag{{Address: 0, Type: f32}, {Address: 2, Type: f32}}, 0, 3,
			[]want{{Holding, 0, 2, 1}, {Holding, 2, 2, 1}}},
		{"coils up to 2000", []Tag{{Register: Coil, Address: 0, Type: b}, {Register: Coil, Address: 1999, Type: b}, {Register: Coil, Address: 2000, Type: b}}, 5000, 125,
			[]want{{Coil, 0, 2000, 2}, {Coil, 2000, 1, 1}}},
		{"overlapping tags share", []Tag{{Address: 0, Type: Type{Base: Uint64}}, {Address: 1, Type: u16}}, 0, 125,
			[]want{{Holding, 0, 4, 2}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := plan(c.tags, c.maxGap, c.maxRegs)
			if len(got) != len(c.want) {
				t.Fatalf("got %d requests %+v, want %+v", len(got), got, c.want)
			}
			for i, w := range c.want {
				g := got[i]
				if g.reg != w.reg || g.addr != w.addr || g.qty != w.qty || len(g.tags) != w.tags {
					t.Fatalf("request %d = %+v, want %+v", i, g, w)
				}
			}
		})
	}
}
