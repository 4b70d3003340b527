//go:build e2e

package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/iot-producer/iot-producer/agent/ingest"
	"github.com/iot-producer/iot-producer/record"
)

// pymodbusPoint is one entry of the spec testdata/pymodbus_server.py
// serves: the server computes the registers with Python's struct module.
type pymodbusPoint struct {
	Unit     int    `json:"unit"`
	Register string `json:"register"`
	Address  int    `json:"address"`
	Type     string `json:"type"`
	Order    string `json:"order,omitempty"`
	Value    any    `json:"value"`
	// want is the value the record must carry, as record.Fields would
	// decode it; bit and scale are the tag's extra settings.
	want  record.Fields
	bit   int
	scale float64
}

// pymodbusPoints covers every type in every byte order, the four tables,
// a bit in a register and a scaled value.
func pymodbusPoints() []pymodbusPoint {
	type val struct {
		typ  string
		v    any
		want record.Fields
	}
	vals := []val{
		{"int16", -12345, record.Fields{Type: "int", Int: -12345}},
		{"uint16", 54321, record.Fields{Type: "uint", Uint: 54321}},
		{"int32", -123456789, record.Fields{Type: "int", Int: -123456789}},
		{"uint32", 3000000000, record.Fields{Type: "uint", Uint: 3000000000}},
		{"int64", int64(-1234567890123456789), record.Fields{Type: "int", Int: -1234567890123456789}},
		{"uint64", uint64(18000000000000000000), record.Fields{Type: "uint", Uint: 18000000000000000000}},
		{"float32", 123.5, record.Fields{Type: "float", Float: 123.5}},
		// Not exact in binary: the record must carry the shortest decimal
		// that reads back as the register's float32, not 3.141590118408203.
		{"float32", 3.14159, record.Fields{Type: "float", Float: 3.14159}},
		{"float32", -273.15, record.Fields{Type: "float", Float: -273.15}},
		{"float64", -9876.54321, record.Fields{Type: "float", Float: -9876.54321}},
		{"string(10)", "PLC-Line-1", record.Fields{Type: "string", String: "PLC-Line-1"}},
		{"string(5)", "odd", record.Fields{Type: "string", String: "odd"}},
	}
	var out []pymodbusPoint
	addr := 0
	for _, v := range vals {
		n := map[string]int{"int16": 1, "uint16": 1, "int32": 2, "uint32": 2, "float32": 2, "int64": 4, "uint64": 4, "float64": 4, "string(10)": 5, "string(5)": 3}[v.typ]
		for _, o := range []string{"ABCD", "CDAB", "BADC", "DCBA"} {
			out = append(out, pymodbusPoint{Unit: 1, Register: "holding", Address: addr, Type: v.typ, Order: o, Value: v.v, want: v.want, bit: -1})
			addr += n
		}
	}
	out = append(out,
		pymodbusPoint{Unit: 1, Register: "input", Address: 10, Type: "int16", Value: 2215, want: record.Fields{Type: "float", Float: 221.5}, bit: -1, scale: 0.1},
		pymodbusPoint{Unit: 1, Register: "input", Address: 11, Type: "uint16", Value: 0b1000_0000_0000_1001, want: record.Fields{Type: "bool", Bool: true}, bit: 15},
		pymodbusPoint{Unit: 1, Register: "coil", Address: 5, Type: "bool", Value: true, want: record.Fields{Type: "bool", Bool: true}, bit: -1},
		pymodbusPoint{Unit: 1, Register: "coil", Address: 6, Type: "bool", Value: false, want: record.Fields{Type: "bool", Bool: false}, bit: -1},
		pymodbusPoint{Unit: 1, Register: "discrete", Address: 9, Type: "bool", Value: true, want: record.Fields{Type: "bool", Bool: true}, bit: -1},
	)
	return out
}

func (p pymodbusPoint) tagName() string {
	name := fmt.Sprintf("%s_%d_%s", p.Register, p.Address, strings.NewReplacer("(", "", ")", "").Replace(p.Type))
	if p.Order != "" {
		name += "_" + p.Order
	}
	return name
}

// tagYAML is the agent's tag for p, using the Modicon notation for holding
// and input registers and 0-based addresses for the bit tables.
func (p pymodbusPoint) tagYAML() string {
	var addr, extra string
	typ := p.Type
	switch p.Register {
	case "holding":
		addr = fmt.Sprintf("%d", 400001+p.Address)
	case "input":
		addr = fmt.Sprintf("%d", 300001+p.Address)
	default:
		addr = fmt.Sprintf("%d", p.Address)
		extra = ", register: " + p.Register
	}
	if p.Order != "" {
		extra += ", byte_order: " + p.Order
	}
	if p.bit >= 0 {
		typ = "bool"
		extra += fmt.Sprintf(", bit: %d", p.bit)
	}
	if p.scale != 0 {
		extra += fmt.Sprintf(", scale: %g", p.scale)
	}
	return fmt.Sprintf("      - {name: %s, address: %q, type: %q%s}\n", p.tagName(), addr, typ, extra)
}

// requireTools fails the test when a peer it needs is missing.
func requireTools(t *testing.T) string {
	t.Helper()
	python := "/usr/bin/python3" // Debian's python3-pymodbus installs here
	if out, err := exec.Command(python, "-c", "import pymodbus, serial_asyncio; print(pymodbus.__version__)").CombinedOutput(); err != nil {
		t.Fatalf("pymodbus is missing (%v: %s): run scripts/ci-deps.sh (python3-pymodbus, python3-serial-asyncio)", err, out)
	} else {
		t.Logf("pymodbus %s", strings.TrimSpace(string(out)))
	}
	if _, err := exec.LookPath("socat"); err != nil {
		t.Fatal("socat is missing: run scripts/ci-deps.sh")
	}
	return python
}

// startSocatPair links two ptys and returns their paths.
func startSocatPair(t *testing.T, dir string) (string, string) {
	t.Helper()
	a, b := filepath.Join(dir, "ttyA"), filepath.Join(dir, "ttyB")
	cmd := exec.Command("socat", "pty,raw,echo=0,link="+a, "pty,raw,echo=0,link="+b)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, errA := os.Stat(a)
		_, errB := os.Stat(b)
		if errA == nil && errB == nil {
			return a, b
		}
		if time.Now().After(deadline) {
			t.Fatal("socat did not create its ptys within 10s")
		}
		time.Sleep(20 * time.Millisecond) // waiting for socat's links to appear
	}
}

// startPymodbus serves points over TCP on a free port and RTU on rtuDev.
func startPymodbus(t *testing.T, python, dir, rtuDev string, points []pymodbusPoint) string {
	t.Helper()
	spec, err := json.Marshal(points)
	if err != nil {
		t.Fatal(err)
	}
	specPath := filepath.Join(dir, "spec.json")
	if err := os.WriteFile(specPath, spec, 0o600); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	cmd := exec.Command(python, "testdata/pymodbus_server.py", specPath, "--tcp", addr, "--rtu", rtuDev, "--baud", "19200")
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	ready := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if sc.Text() == "ready" {
				ready <- true
			}
		}
		ready <- false
	}()
	select {
	case ok := <-ready:
		if !ok {
			t.Fatal("pymodbus server exited before it was ready")
		}
	case <-time.After(30 * time.Second):
		t.Fatal("pymodbus server not ready within 30s")
	}
	return addr
}

// TestModbusAgainstPymodbus polls pymodbus, a Modbus server this project
// did not write, over TCP and over RTU on a socat pty pair, with register
// contents Python computed for every type and byte order, and checks
// every value that arrives in Kafka: float32 registers as their shortest
// decimal, and the samples of a unit pymodbus does not have (a dead
// device sharing the connection) without values. Then it starts the agent
// again on a fresh buffer file and finds a new epoch whose sequence
// numbers start at 1. Each run ends drained (nothing left in its buffer),
// and every series of each epoch has every sequence number its buffer
// committed, from 1 without a gap, none used for two different samples.
func TestModbusAgainstPymodbus(t *testing.T) {
	brokers := kafkaBrokers(t)
	python := requireTools(t)
	dir := t.TempDir()
	ttyA, ttyB := startSocatPair(t, dir)
	points := pymodbusPoints()
	tcpAddr := startPymodbus(t, python, dir, ttyA, points)

	topic := fmt.Sprintf("e2e-modbus-%d", time.Now().UnixNano())
	var tags strings.Builder
	for _, p := range points {
		tags.WriteString(p.tagYAML())
	}
	config := func(stateDir string) string {
		return fmt.Sprintf(`
gateway: {id: gw-e2e-modbus, state_dir: %q}
producer:
  brokers: [%s]
  topic: %s
telemetry: {metrics_listen: "127.0.0.1:0", health_listen: "127.0.0.1:0", pprof_listen: "off"}
plcs:
  - name: pym-tcp
    driver: modbus
    endpoint: %s
    unit_id: 1
    poll_interval: 200ms
    tags:
%s
  - name: pym-dead
    driver: modbus
    endpoint: %s
    unit_id: 9
    poll_interval: 200ms
    tags:
      - {name: temp, address: "400001", type: float32}
      - {name: count, address: "400010", type: int16}
      - {name: run, address: "5", register: coil, type: bool}
  - name: pym-rtu
    driver: modbus
    endpoint: %s
    baud_rate: 19200
    parity: N
    unit_id: 1
    poll_interval: 200ms
    timeout: 2s
    tags:
%s
`, stateDir, strings.Join(brokers, ", "), topic, tcpAddr, tags.String(), tcpAddr, ttyB, tags.String())
	}
	cfgPath := writeConfig(t, dir, config(dir))

	a := startAgent(t, cfgPath)
	perPoll := float64(len(points))
	// The dead unit shares pym-tcp's connection: until it is demoted
	// (three polls) each of its timeouts holds pym-tcp's requests back. In
	// another poll slot than pym-tcp's, it may not have timed out three
	// times by pym-tcp's third poll: its demotion is awaited too.
	a.waitReadAndAcked(t, "modbus:pym-tcp", 3*perPoll, 60*time.Second)
	a.waitLog(t, "modbus unit demoted: ", 30*time.Second)
	a.stopDrained(t, 2*time.Minute, disableSlowPLCs)

	firstLog := a.log()

	// A restart on a fresh buffer file (a re-imaged gateway, a new volume):
	// its records carry a new epoch, and their numbers start again at 1.
	fresh := filepath.Join(dir, "fresh")
	if err := os.Mkdir(fresh, 0o700); err != nil {
		t.Fatal(err)
	}
	b := startAgent(t, writeConfig(t, fresh, config(fresh)))
	b.waitReadAndAcked(t, "modbus:pym-tcp", perPoll, 60*time.Second)
	b.stopDrained(t, 2*time.Minute, disableSlowPLCs)

	all := readModbusTopic(t, brokers, topic)
	var epochs []string
	firstSeq := map[string]uint64{} // by epoch
	for _, f := range all["pym-tcp"] {
		if _, ok := firstSeq[f.Epoch]; !ok {
			epochs = append(epochs, f.Epoch)
			firstSeq[f.Epoch] = f.Seq
		}
		firstSeq[f.Epoch] = min(firstSeq[f.Epoch], f.Seq)
	}
	if len(epochs) != 2 || firstSeq[epochs[0]] != 1 || firstSeq[epochs[1]] != 1 {
		t.Fatalf("epochs %v with first sequence numbers %v: want two epochs (one per buffer file), each from seq 1", epochs, firstSeq)
	}
	t.Logf("epochs: %v (the second from the fresh buffer file)", epochs)
	for i, bufDir := range []string{dir, fresh} {
		path := filepath.Join(bufDir, "buffer.db")
		requireDrained(t, path, "kafka")
		checkModbusSeqs(t, epochs[i], all, lastSeqs(t, path))
	}
	got := map[string][]record.Fields{}
	for device, fs := range all {
		for _, f := range fs {
			if f.Epoch == epochs[0] {
				got[device] = append(got[device], f)
			}
		}
	}
	want := map[string]pymodbusPoint{}
	for _, p := range points {
		want[p.tagName()] = p
	}
	for _, device := range []string{"pym-tcp", "pym-rtu"} {
		checked := 0
		for _, f := range got[device] {
			p, ok := want[f.Tag]
			if !ok {
				t.Errorf("%s: unexpected tag %s", device, f.Tag)
				continue
			}
			if f.Quality != "good" {
				t.Errorf("%s/%s: quality %s", device, f.Tag, f.Quality)
				continue
			}
			w := p.want
			switch {
			case f.Type != w.Type:
				t.Errorf("%s/%s: type %s, want %s", device, f.Tag, f.Type, w.Type)
			case p.Type == "float32" && p.scale == 0 && f.Float != w.Float:
				t.Errorf("%s/%s = %v, want the shortest decimal %v", device, f.Tag, f.Float, w.Float)
			case w.Type == "float" && math.Abs(f.Float-w.Float) > 1e-9*math.Max(1, math.Abs(w.Float)):
				t.Errorf("%s/%s = %v, want %v", device, f.Tag, f.Float, w.Float)
			case w.Type == "int" && f.Int != w.Int, w.Type == "uint" && f.Uint != w.Uint,
				w.Type == "bool" && f.Bool != w.Bool, w.Type == "string" && f.String != w.String:
				t.Errorf("%s/%s = %+v, want %+v", device, f.Tag, f, w)
			}
			checked++
		}
		tagsSeen := map[string]bool{}
		for _, f := range got[device] {
			tagsSeen[f.Tag] = true
		}
		if len(tagsSeen) != len(points) {
			t.Errorf("%s: %d of %d tags arrived", device, len(tagsSeen), len(points))
		}
		t.Logf("%s: %d records checked, %d tags", device, checked, len(tagsSeen))
	}

	dead := got["pym-dead"]
	if len(dead) == 0 {
		t.Fatal("no records of the dead unit")
	}
	types := map[string]string{"temp": "float", "count": "int", "run": "bool"}
	for _, f := range dead {
		if f.Quality != "bad" || !f.NoValue || f.Type != types[f.Tag] {
			t.Errorf("dead unit: record %+v, want quality bad, no value, type %s", f, types[f.Tag])
		}
	}
	t.Logf("pym-dead: %d records, all bad without value", len(dead))
	// pymodbus 3.0 does not answer for a unit it lacks (a timeout, as a
	// dead device on a line); later versions answer exception 0x0B, as a
	// gateway does. Either way the unit is demoted after three polls.
	if l := firstLog; !strings.Contains(l, "modbus unit demoted: it did not answer in 3 polls in a row") &&
		!strings.Contains(l, "modbus unit demoted: the gateway in front of it answered for it in 3 polls in a row") {
		t.Errorf("the log does not say the dead unit was demoted:\n%s", l)
	}
}

// waitReadAndAcked waits until source has produced n samples, then until
// the broker has acknowledged every sample produced by then.
func (a *agentProc) waitReadAndAcked(t *testing.T, source string, n float64, limit time.Duration) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		got, err := a.counter(`device_data_generated_total{source="` + source + `"}`)
		if err != nil {
			t.Fatalf("scrape metrics: %v\n%s", err, a.log())
		}
		if got >= n {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s produced only %.0f of %.0f samples after %s:\n%s", source, got, n, limit, a.log())
		}
		select {
		case <-a.done:
			t.Fatalf("agent exited:\n%s", a.log())
		case <-time.After(100 * time.Millisecond): // scrape interval
		}
	}
	all, err := a.counter("device_data_generated_total")
	if err != nil {
		t.Fatalf("scrape metrics: %v", err)
	}
	a.waitAcked(t, all, time.Until(deadline)+time.Second)
}

// readModbusTopic reads every record of topic, by device.
func readModbusTopic(t *testing.T, brokers []string, topic string) map[string][]record.Fields {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxWait(200*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	// The agent has stopped: read up to the end offsets of now.
	ends, err := kadm.NewClient(cl).ListEndOffsets(ctx, topic)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		t.Fatalf("list end offsets of %s: %v", topic, err)
	}
	remaining := map[int32]int64{}
	ends.Each(func(o kadm.ListedOffset) {
		if o.Offset > 0 {
			remaining[o.Partition] = o.Offset
		}
	})
	out := map[string][]record.Fields{}
	for len(remaining) > 0 {
		fetches := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("read %s: %v (partitions not read to the end: %v)", topic, ctx.Err(), remaining)
		}
		for _, e := range fetches.Errors() {
			t.Fatalf("fetch %s[%d]: %v", e.Topic, e.Partition, e.Err)
		}
		fetches.EachRecord(func(r *kgo.Record) {
			f, err := record.Decode(r.Value)
			if err != nil {
				t.Fatalf("record at %d: %v", r.Offset, err)
			}
			h := map[string]string{}
			for _, kv := range r.Headers {
				h[kv.Key] = string(kv.Value)
			}
			if len(f.Epoch) != 16 || h[record.HeaderEpoch] != f.Epoch || h[record.HeaderSchema] != "2" {
				t.Fatalf("record at %d: epoch %q, headers %v: want a 16-character epoch in the value and the iot-epoch header, iot-schema 2", r.Offset, f.Epoch, h)
			}
			out[f.Device] = append(out[f.Device], f)
			if end, ok := remaining[r.Partition]; ok && r.Offset+1 >= end {
				delete(remaining, r.Partition)
			}
		})
	}
	if len(out) == 0 {
		t.Fatalf("no records in %s", topic)
	}
	return out
}

// disableSlowPLCs disables, in the quiet configuration of stopDrained,
// the PLCs whose first poll is slow — the RTU line and the dead unit's
// timeouts — so that the drain does not race their first reading.
func disableSlowPLCs(cfg []byte) []byte {
	for _, name := range []string{"pym-dead", "pym-rtu"} {
		cfg = bytes.Replace(cfg, []byte("  - name: "+name+"\n"), []byte("  - name: "+name+"\n    enabled: false\n"), 1)
	}
	return cfg
}

// checkModbusSeqs checks the records of epoch in all (by device) against
// the last sequence number of each series its buffer committed: every
// number from 1 to the last arrived, none above it, and a number that
// arrived twice (a batch sent again after a lost acknowledgement) carries
// the same sample both times — a number is never used for two samples.
func checkModbusSeqs(t *testing.T, epoch string, all map[string][]record.Fields, last map[ingest.Series]uint64) {
	t.Helper()
	got := map[ingest.Series]map[uint64]record.Fields{}
	records, dups := 0, 0
	for _, fs := range all {
		for _, f := range fs {
			if f.Epoch != epoch {
				continue
			}
			records++
			k := ingest.Series{Device: f.Device, Tag: f.Tag}
			if got[k] == nil {
				got[k] = map[uint64]record.Fields{}
			}
			if prev, ok := got[k][f.Seq]; ok {
				dups++
				if !reflect.DeepEqual(prev, f) {
					t.Errorf("epoch %s: %s/%s#%d used for two samples: %+v and %+v", epoch, f.Device, f.Tag, f.Seq, prev, f)
				}
				continue
			}
			got[k][f.Seq] = f
		}
	}
	if len(last) == 0 {
		t.Fatalf("epoch %s: the buffer committed no series", epoch)
	}
	expected := 0
	for k, n := range last {
		expected += int(n)
		missing := 0
		for seq := uint64(1); seq <= n; seq++ {
			if _, ok := got[k][seq]; !ok {
				missing++
			}
		}
		if missing > 0 {
			t.Errorf("epoch %s: %s/%s: %d of sequence numbers 1..%d missing", epoch, k.Device, k.Tag, missing, n)
		}
	}
	for k, seqs := range got {
		n, ok := last[k]
		for seq := range seqs {
			if !ok || seq > n {
				t.Errorf("epoch %s: %s/%s#%d arrived but was never committed (last %d)", epoch, k.Device, k.Tag, seq, n)
			}
		}
	}
	t.Logf("epoch %s: %d series, %d sequence numbers committed, all arrived from 1 without a gap; %d records, %d sent twice (identical)", epoch, len(last), expected, records, dups)
}
