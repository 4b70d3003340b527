package main

import (
	"bytes"
	"context"
	"net"
	"strings"
	"testing"

	"github.com/iot-producer/iot-producer/drivers"
	mb "github.com/iot-producer/iot-producer/drivers/modbus"
	sim "github.com/iot-producer/iot-producer/simulator/modbus"
)

// serveSim serves a small register map on a loopback port.
func serveSim(t *testing.T) string {
	t.Helper()
	s, err := sim.NewSimulator(sim.SimOptions{Units: []sim.Unit{{ID: 4, Points: []sim.Point{
		{Name: "speed", Address: 0, Type: mb.Type{Base: mb.Float32}, Order: mb.CDAB, Value: drivers.Float(1450.5)},
		{Name: "name", Address: 2, Type: mb.Type{Base: mb.String, Len: 4}, Value: drivers.String("Pump")},
		{Name: "flags", Register: mb.Input, Address: 0, Type: mb.Type{Base: mb.Uint16}, Value: drivers.Uint(0x8001)},
		{Name: "run", Register: mb.Coil, Address: 7, Type: mb.Type{Base: mb.Bool}, Value: drivers.Bool(true)},
		{Name: "pi", Address: 10, Type: mb.Type{Base: mb.Float32}, Value: drivers.Float(3.14159)},
	}}}})
	if err != nil {
		t.Fatal(err)
	}
	srv := sim.NewServer(s.Bank(), sim.ServerOptions{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.ServeTCP(ctx, ln) }()
	t.Cleanup(func() { cancel(); <-done })
	return ln.Addr().String()
}

func TestModbusCommands(t *testing.T) {
	addr := serveSim(t)
	cases := []struct {
		name string
		args []string
		code int
		out  []string
		err  []string
	}{
		{"read float32 CDAB in notation", []string{"read", "-endpoint", addr, "-unit", "4", "-address", "40001", "-type", "float32", "-order", "CDAB"},
			exitOK, []string{"holding 0 unit 4 float32 CDAB = 1450.5 (raw 50 00 44 b5)"}, nil},
		{"read a string 0-based", []string{"read", "-endpoint", addr, "-unit", "4", "-address", "2", "-register", "holding", "-type", "string(4)"},
			exitOK, []string{`= "Pump"`}, nil},
		{"read a bit", []string{"read", "-endpoint", addr, "-unit", "4", "-address", "30001", "-bit", "15"},
			exitOK, []string{"= true (bit 15)"}, nil},
		{"read a coil", []string{"read", "-endpoint", addr, "-unit", "4", "-address", "00008"},
			exitOK, []string{"coil 7 unit 4 bool = true"}, nil},
		{"exception names the read", []string{"read", "-endpoint", addr, "-unit", "4", "-address", "40100"},
			exitFailure, nil, []string{"read holding 99 (quantity 1): exception", "illegal data address"}},
		{"probe shows every order", []string{"probe", "-endpoint", addr, "-unit", "4", "-address", "40001", "-count", "4"},
			exitOK, []string{"holding registers 0-3 of unit 4", "float32", "1450.5", "ABCD", "CDAB", "BADC", "DCBA", "P.D.Pump"}, nil},
		{"probe shows float32 at its shortest decimal", []string{"probe", "-endpoint", addr, "-unit", "4", "-address", "40011", "-count", "2"},
			exitOK, []string{"  3.14159  "}, nil},
		{"missing endpoint", []string{"read", "-address", "1"}, exitUsage, nil, []string{"-endpoint is required"}},
		// The flags go through the configuration's parser: what a config
		// file refuses, read refuses, with the same words.
		{"int16 on a coil refused", []string{"read", "-endpoint", addr, "-unit", "4", "-address", "7", "-register", "coil", "-type", "int16"},
			exitUsage, nil, []string{"modbus read: -type: coil registers hold bits: the type must be bool, not int16"}},
		{"byte order on a coil refused", []string{"read", "-endpoint", addr, "-unit", "4", "-address", "00008", "-order", "CDAB"},
			exitUsage, nil, []string{"modbus read: -order: coil registers hold single bits, which have no byte order"}},
		{"bit on a float refused", []string{"read", "-endpoint", addr, "-unit", "4", "-address", "40001", "-type", "float32", "-bit", "3"},
			exitUsage, nil, []string{"modbus read: -bit:"}},
		{"bit 16 refused", []string{"read", "-endpoint", addr, "-unit", "4", "-address", "40001", "-bit", "16"},
			exitUsage, nil, []string{"modbus read: -bit: 16 is out of range"}},
		{"byte-swapped int16", []string{"read", "-endpoint", addr, "-unit", "4", "-address", "30001", "-type", "uint16", "-order", "BADC"},
			exitOK, []string{"input 0 unit 4 uint16 BADC = 384 (raw 80 01)"}, nil},
		{"float32 at its shortest decimal", []string{"read", "-endpoint", addr, "-unit", "4", "-address", "40011", "-type", "float32"},
			exitOK, []string{"holding 10 unit 4 float32 ABCD = 3.14159 (raw 40 49 0f d0)"}, nil},
		{"bad notation", []string{"read", "-endpoint", addr, "-address", "70001"}, exitUsage, nil, []string{"first digit"}},
		{"probe of coils refused", []string{"probe", "-endpoint", addr, "-address", "00001"}, exitUsage, nil, []string{"holds bits"}},
		{"unknown subcommand", []string{"write"}, exitUsage, nil, []string{`unknown command "write"`}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(append([]string{"modbus"}, c.args...), &stdout, &stderr)
			if code != c.code {
				t.Fatalf("exit code %d, want %d\nstdout:\n%s\nstderr:\n%s", code, c.code, stdout.String(), stderr.String())
			}
			for _, w := range c.out {
				if !strings.Contains(stdout.String(), w) {
					t.Errorf("stdout lacks %q:\n%s", w, stdout.String())
				}
			}
			for _, w := range c.err {
				if !strings.Contains(stderr.String(), w) {
					t.Errorf("stderr lacks %q:\n%s", w, stderr.String())
				}
			}
		})
	}
}
