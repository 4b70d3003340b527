package main

import (
	"context"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/iot-producer/iot-producer/drivers"
	mb "github.com/iot-producer/iot-producer/drivers/modbus"
	sim "github.com/iot-producer/iot-producer/simulator/modbus"
)

// cmdModbus dispatches the Modbus commissioning commands.
func cmdModbus(args []string, stdout, stderr io.Writer) int {
	usage := func(w io.Writer) {
		fmt.Fprintln(w, "Usage: iot-producer modbus <read|probe|simulate> [flags]")
		fmt.Fprintln(w)
		fmt.Fprintln(w, "  read      read one address as a type: iot-producer modbus read -endpoint 10.0.0.5:502 -address 40001 -type float32 -order CDAB")
		fmt.Fprintln(w, "  probe     show a register range decoded in every type and byte order")
		fmt.Fprintln(w, "  simulate  serve simulated Modbus devices (TCP, RTU on a pty) from a register map")
		fmt.Fprintln(w)
		fmt.Fprintln(w, "Addresses are 0-based with -register, or in notation without it: 40001 is holding 0, 30001 input 0, 00001 coil 0, 10001 discrete 0.")
	}
	return dispatch("modbus", args, stdout, stderr, usage, map[string]subcommand{
		"read":     modbusRead,
		"probe":    modbusProbe,
		"simulate": modbusSimulate,
	})
}

// linkFlags are the flags that say where a device is.
type linkFlags struct {
	endpoint, transport, parity string
	unit, baud, dataBits, stop  int
	timeout                     time.Duration
}

func addLinkFlags(fs *flag.FlagSet) *linkFlags {
	l := &linkFlags{}
	fs.StringVar(&l.endpoint, "endpoint", "", "host:port (TCP) or serial device path (RTU); required")
	fs.StringVar(&l.transport, "transport", "", "tcp, rtu or rtuovertcp; default: rtu for a path, tcp otherwise")
	fs.IntVar(&l.unit, "unit", 1, "unit (slave) id")
	fs.IntVar(&l.baud, "baud", 19200, "RTU baud rate")
	fs.StringVar(&l.parity, "parity", "E", "RTU parity: N, E or O")
	fs.IntVar(&l.dataBits, "data-bits", 8, "RTU data bits")
	fs.IntVar(&l.stop, "stop-bits", 1, "RTU stop bits")
	fs.DurationVar(&l.timeout, "timeout", time.Second, "request timeout")
	return l
}

func (l *linkFlags) endpointSpec() (mb.Endpoint, error) {
	if l.endpoint == "" {
		return mb.Endpoint{}, errors.New("-endpoint is required")
	}
	if l.unit < 0 || l.unit > 255 {
		return mb.Endpoint{}, fmt.Errorf("-unit %d out of range 0-255", l.unit)
	}
	tr, err := mb.ParseTransport(l.transport, l.endpoint)
	if err != nil {
		return mb.Endpoint{}, err
	}
	return mb.Endpoint{Transport: tr, Address: l.endpoint, ConnectTimeout: l.timeout,
		Serial: mb.Serial{BaudRate: l.baud, Parity: strings.ToUpper(l.parity), DataBits: l.dataBits, StopBits: l.stop}}, nil
}

func modbusRead(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("modbus read", flag.ContinueOnError)
	fs.SetOutput(stderr)
	l := addLinkFlags(fs)
	address := fs.String("address", "", "address: 0-based with -register, or 40001-style notation; required")
	register := fs.String("register", "", "coil, discrete, holding or input; empty: from the notation (holding for short addresses)")
	typ := fs.String("type", "", "bool, int16, uint16, int32, uint32, int64, uint64, float32, float64 or string(n); default bool on coils, discrete inputs and with -bit, uint16 otherwise")
	order := fs.String("order", "", "byte order of a register value: ABCD (the default), CDAB, BADC or DCBA")
	bit := fs.Int("bit", -1, "read this bit (0-15) of a register as a bool")
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	ep, err := l.endpointSpec()
	if err != nil {
		fmt.Fprintf(stderr, "modbus read: %v\n", err)
		return exitUsage
	}
	// The flags are a tag of the configuration file, checked by the same
	// parser: what the config refuses, read refuses.
	tc := mb.TagConfig{Name: "read", Address: *address, Register: *register, Type: *typ, ByteOrder: *order, Scale: 1}
	if *bit >= 0 {
		tc.Bit = bit
	}
	if tc.Type == "" {
		tc.Type = "uint16"
		if reg, _, err := mb.ParseAddress(*address, *register); *bit >= 0 || err == nil && reg.IsBit() {
			tc.Type = "bool"
		}
	}
	tag, err := tc.Parse(125)
	if err != nil {
		fmt.Fprintf(stderr, "modbus read: %s\n", asFlags(err))
		return exitUsage
	}
	reg, addr, t, o := tag.Register, tag.Address, tag.Type, tag.Order
	qty := uint16(t.Registers())
	if reg.IsBit() {
		qty = 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	raw, err := mb.NewPool(mb.PoolOptions{}).Read(ctx, ep, uint8(l.unit), reg, addr, qty, l.timeout)
	if err != nil {
		fmt.Fprintf(stderr, "modbus read: %v\n", err)
		return exitFailure
	}
	var text string
	switch {
	case reg.IsBit():
		text = strconv.FormatBool(raw[0]&1 != 0)
	case tag.Bit >= 0:
		b, _ := mb.DecodeBit(raw, o, tag.Bit)
		text = fmt.Sprintf("%t (bit %d)", b, tag.Bit)
	default:
		v, err := mb.Decode(raw, t, o)
		if err != nil {
			fmt.Fprintf(stderr, "modbus read: %v\n", err)
			return exitFailure
		}
		text = exactValue(v)
	}
	if reg.IsBit() {
		fmt.Fprintf(stdout, "%s %d unit %d %s = %s (raw % x)\n", reg, addr, l.unit, t, text, raw)
	} else {
		fmt.Fprintf(stdout, "%s %d unit %d %s %s = %s (raw % x)\n", reg, addr, l.unit, t, o, text, raw)
	}
	return exitOK
}

// asFlags names the flag of modbus read where a tag's error names its
// configuration key.
func asFlags(err error) string {
	msg := err.Error()
	for key, flag := range map[string]string{"byte_order": "-order", "type": "-type", "address": "-address", "bit": "-bit"} {
		if rest, ok := strings.CutPrefix(msg, key+": "); ok {
			return flag + ": " + rest
		}
	}
	return msg
}

// exactValue formats v with every digit it has; a float32 register shows
// its shortest decimal (3.14159, see drivers.Float32).
func exactValue(v drivers.Value) string {
	switch v.Kind {
	case drivers.KindFloat:
		return strconv.FormatFloat(v.F, 'g', -1, 64)
	case drivers.KindInt:
		return strconv.FormatInt(v.I, 10)
	case drivers.KindUint:
		return strconv.FormatUint(v.U, 10)
	case drivers.KindBool:
		return strconv.FormatBool(v.B)
	}
	return strconv.Quote(v.S)
}

func modbusProbe(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("modbus probe", flag.ContinueOnError)
	fs.SetOutput(stderr)
	l := addLinkFlags(fs)
	address := fs.String("address", "", "first address: 0-based with -register, or 40001-style notation; required")
	register := fs.String("register", "", "holding or input; empty: from the notation")
	count := fs.Int("count", 8, "registers to read, 1-125")
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	ep, err := l.endpointSpec()
	if err == nil && (*count < 1 || *count > 125) {
		err = fmt.Errorf("-count %d out of range 1-125", *count)
	}
	var reg mb.RegisterType
	var addr uint16
	if err == nil {
		reg, addr, err = mb.ParseAddress(*address, *register)
	}
	if err == nil && reg.IsBit() {
		err = fmt.Errorf("probe reads registers: %s holds bits; use read", reg)
	}
	if err != nil {
		fmt.Fprintf(stderr, "modbus probe: %v\n", err)
		return exitUsage
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	raw, err := mb.NewPool(mb.PoolOptions{}).Read(ctx, ep, uint8(l.unit), reg, addr, uint16(*count), l.timeout)
	if err != nil {
		fmt.Fprintf(stderr, "modbus probe: %v\n", err)
		return exitFailure
	}
	writeProbe(stdout, reg, addr, l.unit, raw)
	return exitOK
}

// writeProbe prints the registers in raw, then every value that starts at
// each register in every type and byte order.
func writeProbe(w io.Writer, reg mb.RegisterType, addr uint16, unit int, raw []byte) {
	n := len(raw) / 2
	fmt.Fprintf(w, "%s registers %d-%d of unit %d\n\n", reg, addr, int(addr)+n-1, unit)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "address\thex\tuint16\tint16\tbits 15..0\tchars\t")
	for i := range n {
		v := binary.BigEndian.Uint16(raw[2*i:])
		fmt.Fprintf(tw, "%d\t%04x\t%d\t%d\t%016b\t%s\t\n", int(addr)+i, v, v, int16(v), v, printable(raw[2*i:2*i+2]))
	}
	tw.Flush()
	types := []mb.Type{{Base: mb.Int16}, {Base: mb.Uint16}, {Base: mb.Int32}, {Base: mb.Uint32}, {Base: mb.Float32},
		{Base: mb.Int64}, {Base: mb.Uint64}, {Base: mb.Float64}}
	for _, t := range types {
		k := t.Registers()
		if k > n {
			continue
		}
		orders := mb.ByteOrders
		if k == 1 {
			orders = []mb.ByteOrder{mb.ABCD, mb.BADC}
		}
		fmt.Fprintf(w, "\n%s\n", t)
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprint(tw, "start\t")
		for _, o := range orders {
			fmt.Fprintf(tw, "%s\t", o)
		}
		fmt.Fprintln(tw)
		for i := 0; i+k <= n; i++ {
			fmt.Fprintf(tw, "%d\t", int(addr)+i)
			for _, o := range orders {
				v, err := mb.Decode(raw[2*i:2*(i+k)], t, o)
				if err != nil {
					fmt.Fprint(tw, "?\t")
					continue
				}
				fmt.Fprintf(tw, "%s\t", exactValue(v))
			}
			fmt.Fprintln(tw)
		}
		tw.Flush()
	}
	swapped := make([]byte, len(raw))
	for i := 0; i+1 < len(raw); i += 2 {
		swapped[i], swapped[i+1] = raw[i+1], raw[i]
	}
	fmt.Fprintf(w, "\nstring(%d), '.' for other bytes\n  high byte first (ABCD, CDAB): %s\n  low byte first (BADC, DCBA):  %s\n",
		len(raw), printable(raw), printable(swapped))
}

func printable(b []byte) string {
	var sb strings.Builder
	for _, c := range b {
		if c >= 0x20 && c < 0x7f {
			sb.WriteByte(c)
		} else {
			sb.WriteByte('.')
		}
	}
	return sb.String()
}

func modbusSimulate(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("modbus simulate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	mapFile := fs.String("map", "", "YAML register map (see simulator/modbus.MapFile); default: -registers float32 signals on unit 1")
	listen := fs.String("listen", "127.0.0.1:5020", "TCP listen address of the first device; empty: no TCP")
	devices := fs.Int("devices", 1, "number of TCP devices, on consecutive ports from -listen's")
	registers := fs.Int("registers", 20, "without -map: holding registers per unit (float32 signals, ABCD)")
	units := fs.String("units", "1", "without -map: comma-separated unit ids")
	pty := fs.Bool("pty", false, "also serve RTU on a new pty and print its device path")
	rtuOverTCP := fs.String("rtu-over-tcp", "", "also serve RTU framing on this TCP address (a serial gateway)")
	maxConns := fs.Int("max-conns", 0, "connections each TCP device accepts at once; 0: any")
	delay := fs.Duration("delay", 0, "hold every answer back this long")
	duplicate := fs.Duration("duplicate-after", 0, "send every answer again this long after")
	interval := fs.Duration("interval", time.Second, "without -map: signal update period")
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	opts, err := simOptions(*mapFile, *units, *registers, *interval)
	if err != nil {
		fmt.Fprintf(stderr, "modbus simulate: %v\n", err)
		return exitUsage
	}
	s, err := sim.NewSimulator(opts)
	if err != nil {
		fmt.Fprintf(stderr, "modbus simulate: %v\n", err)
		return exitUsage
	}
	srv := sim.NewServer(s.Bank(), sim.ServerOptions{MaxConns: *maxConns})
	for _, u := range s.Bank().Units() {
		srv.SetFaults(u, sim.Faults{Delay: *delay, DuplicateAfter: *duplicate})
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Go(func() { s.Run(ctx) })
	fail := func(err error) int {
		fmt.Fprintf(stderr, "modbus simulate: %v\n", err)
		stop()
		return exitFailure
	}
	if *listen != "" {
		host, portText, err := net.SplitHostPort(*listen)
		if err != nil {
			return fail(err)
		}
		port, err := strconv.Atoi(portText)
		if err != nil {
			return fail(fmt.Errorf("-listen port %q: %w", portText, err))
		}
		for i := range max(*devices, 1) {
			p := port
			if port != 0 {
				p = port + i
			}
			ln, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(p)))
			if err != nil {
				return fail(err)
			}
			fmt.Fprintf(stdout, "modbus tcp %s\n", ln.Addr())
			wg.Go(func() { _ = srv.ServeTCP(ctx, ln) })
		}
	}
	if *rtuOverTCP != "" {
		ln, err := net.Listen("tcp", *rtuOverTCP)
		if err != nil {
			return fail(err)
		}
		fmt.Fprintf(stdout, "modbus rtuovertcp %s\n", ln.Addr())
		wg.Go(func() { _ = srv.ServeRTUOverTCP(ctx, ln) })
	}
	if *pty {
		master, path, err := sim.OpenPty()
		if err != nil {
			return fail(err)
		}
		fmt.Fprintf(stdout, "modbus rtu %s\n", path)
		wg.Go(func() { _ = srv.ServeRTU(ctx, master) })
	}
	fmt.Fprintln(stdout, "ready")
	<-ctx.Done()
	return exitOK
}

// simOptions loads the register map, or builds the default one.
func simOptions(mapFile, units string, registers int, interval time.Duration) (sim.SimOptions, error) {
	if mapFile != "" {
		data, err := os.ReadFile(mapFile)
		if err != nil {
			return sim.SimOptions{}, err
		}
		return sim.ParseMap(data)
	}
	if registers < 2 || registers > 65536 {
		return sim.SimOptions{}, fmt.Errorf("-registers %d out of range 2-65536", registers)
	}
	opts := sim.SimOptions{Interval: interval, Seed: 1, Variation: 0.1}
	signals := []string{"temperature", "pressure", "speed", "vibration", "flow", "level", "current", "humidity"}
	for _, f := range strings.Split(units, ",") {
		id, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || id < 0 || id > 255 {
			return sim.SimOptions{}, fmt.Errorf("-units: %q is not a unit id 0-255", f)
		}
		u := sim.Unit{ID: uint8(id)}
		for i := 0; i+2 <= registers; i += 2 {
			u.Points = append(u.Points, sim.Point{Name: fmt.Sprintf("r%d", i), Register: mb.Holding, Address: uint16(i),
				Type: mb.Type{Base: mb.Float32}, Signal: signals[(i/2)%len(signals)]})
		}
		opts.Units = append(opts.Units, u)
	}
	return opts, nil
}
