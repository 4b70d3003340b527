// Package bench holds the whole-system benchmarks run by `make bench`.
package bench

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/iot-producer/iot-producer/drivers"
	mb "github.com/iot-producer/iot-producer/drivers/modbus"
)

// The load: 1,000 devices, 20 contiguous holding registers each,
// polled every second, one TCP connection per device.
const (
	benchDevices   = 1000
	benchRegisters = 20
	benchInterval  = time.Second
	warmup         = 3 * time.Second
	window         = 10 * time.Second
	// agentWindow is the agent benchmark's measurement window: the issue
	// asks for the agent's CPU and memory after a minute.
	agentWindow = 60 * time.Second
)

// buildAgent builds the agent binary once per benchmark.
func buildAgent(b *testing.B) string {
	b.Helper()
	bin := filepath.Join(b.TempDir(), "iot-producer")
	cmd := exec.Command("go", "build", "-o", bin, "github.com/iot-producer/iot-producer/cmd/iot-producer")
	cmd.Stderr = os.Stderr
	if err := cmd.Run(); err != nil {
		b.Fatalf("build the agent: %v", err)
	}
	return bin
}

// startDevices runs `iot-producer modbus simulate` in its own process (so
// that its CPU is not counted) with n TCP devices of the given number of
// holding registers on free ports and returns their addresses.
func startDevices(b *testing.B, bin string, n, registers int) []string {
	b.Helper()
	cmd := exec.Command(bin, "modbus", "simulate", "-listen", "127.0.0.1:0", "-devices", strconv.Itoa(n),
		"-registers", strconv.Itoa(registers))
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = cmd.Process.Signal(syscall.SIGTERM); _ = cmd.Wait() })
	var addrs []string
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		line := sc.Text()
		if line == "ready" {
			go func() { _, _ = io.Copy(io.Discard, out) }()
			return addrs
		}
		if a, ok := strings.CutPrefix(line, "modbus tcp "); ok {
			addrs = append(addrs, a)
		}
	}
	b.Fatalf("simulator exited after %d devices", len(addrs))
	return nil
}

// procCPU returns the user+system CPU time of process pid so far.
func procCPU(b *testing.B, pid int) time.Duration {
	b.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		b.Fatal(err)
	}
	// Fields after the command name in parentheses: utime is the 14th
	// field of the line, stime the 15th.
	f := strings.Fields(string(data[strings.LastIndexByte(string(data), ')')+2:]))
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	const clkTck = 100 // USER_HZ on Linux
	return time.Duration(ut+st) * time.Second / clkTck
}

// rssAnon returns the anonymous resident memory of process pid in bytes.
func rssAnon(b *testing.B, pid int) float64 {
	b.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "RssAnon:"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
			return kb * 1024
		}
	}
	b.Fatal("no RssAnon in /proc/pid/status")
	return 0
}

// BenchmarkModbusPolling measures the polling alone: 1,000 drivers in
// this process, one TCP connection each, 20 uint16 tags in one request,
// samples discarded. It reports polls/s, this process's CPU in percent of
// one core and its anonymous RSS. The devices run in another process.
func BenchmarkModbusPolling(b *testing.B) {
	bin := buildAgent(b)
	addrs := startDevices(b, bin, benchDevices, benchRegisters)
	pool := mb.NewPool(mb.PoolOptions{})
	tags := make([]mb.Tag, benchRegisters)
	for i := range tags {
		tags[i] = mb.Tag{Name: fmt.Sprintf("r%d", i), Address: uint16(i), Type: mb.Type{Base: mb.Uint16}, Bit: -1}
	}
	ds := make([]*mb.Driver, len(addrs))
	for i, a := range addrs {
		d, err := mb.New(mb.Options{Name: fmt.Sprintf("dev-%04d", i), Endpoint: mb.Endpoint{Address: a}, Unit: 1,
			Interval: benchInterval, Tags: tags, Pool: pool})
		if err != nil {
			b.Fatal(err)
		}
		ds[i] = d
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{}, len(ds))
	for _, d := range ds {
		go func() { _ = d.Run(ctx, func([]drivers.Sample) {}); done <- struct{}{} }()
	}
	defer func() {
		cancel()
		for range ds {
			<-done
		}
	}()
	time.Sleep(warmup) // let every driver connect and settle into its interval
	sum := func() uint64 {
		var n uint64
		for _, d := range ds {
			n += d.Polls()
		}
		return n
	}
	pid := os.Getpid()
	runtime.GC()
	b.ResetTimer()
	p0, c0, t0 := sum(), procCPU(b, pid), time.Now()
	time.Sleep(window) // the measurement window
	p1, c1, el := sum(), procCPU(b, pid), time.Since(t0)
	b.StopTimer()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	b.ReportMetric(float64(ms.StackInuse)/(1<<20), "MB-stacks")
	b.ReportMetric(float64(ms.HeapInuse)/(1<<20), "MB-heap")
	b.ReportMetric(float64(p1-p0)/el.Seconds(), "polls/s")
	b.ReportMetric(100*(c1-c0).Seconds()/el.Seconds(), "%cpu")
	b.ReportMetric(rssAnon(b, pid)/(1<<20), "MB-rss-anon")
}

var startedLine = regexp.MustCompile(`msg="agent started".* metrics=(\S+)`)

// BenchmarkModbusAgent measures the whole agent binary (polling,
// sequencing, durable buffering, sending to the real Kafka broker `make
// bench` starts) on the issue's load, 1,000 devices × 20 registers every
// second, one endpoint each, with the devices in another process: the
// agent process's CPU in percent of one core over the first minute after
// its start and its anonymous RSS at the end of it, with the polls/s and
// the Go heap and stacks behind them.
func BenchmarkModbusAgent(b *testing.B) {
	bin := buildAgent(b)
	addrs := startDevices(b, bin, benchDevices, benchRegisters)
	brokers := kafkaBrokers(b)
	topic := fmt.Sprintf("bench-modbus-%d", time.Now().UnixNano())
	createTopic(b, brokers, topic, 1)
	dir := b.TempDir()
	ag := startAgent(b, bin, dir, modbusAgentConfig(dir, brokers, topic, addrs, benchRegisters, benchInterval,
		"telemetry: {metrics_listen: \"127.0.0.1:0\", health_listen: \"127.0.0.1:0\", pprof_listen: \"127.0.0.1:0\"}\n"))
	generated := func() float64 { return ag.scrape("device_data_generated_total") }
	time.Sleep(warmup) // let every driver connect and settle into its interval
	b.ResetTimer()
	commits := func() float64 { return ag.scrape("iot_buffer_commits_total") }
	g0, k0, c0, t0 := generated(), commits(), ag.cpu(), time.Now()
	time.Sleep(agentWindow) // the measurement window
	// The agent's CPU and memory first: a scrape of /metrics costs the
	// agent CPU and a gzip writer (1.5 MB in a heap profile), which the
	// window's first scrapes, a minute ago, no longer hold.
	c1, rss, el := ag.cpu(), ag.rssAnon(), time.Since(t0)
	g1, k1 := generated(), commits()
	b.StopTimer()
	sent := ag.scrape("kafka_messages_sent_total")
	b.ReportMetric(ag.scrape("go_memstats_heap_inuse_bytes")/(1<<20), "MB-heap")
	b.ReportMetric(ag.scrape("go_memstats_stack_inuse_bytes")/(1<<20), "MB-stacks")
	// Heap the runtime holds free and has not returned to the system yet,
	// and what it keeps for itself (spans, GC metadata, other): the rest
	// of RssAnon besides the heap in use and the stacks.
	b.ReportMetric((ag.scrape("go_memstats_heap_idle_bytes")-ag.scrape("go_memstats_heap_released_bytes"))/(1<<20), "MB-heap-free")
	b.ReportMetric((ag.scrape("go_memstats_mspan_inuse_bytes")+ag.scrape("go_memstats_mcache_inuse_bytes")+
		ag.scrape("go_memstats_gc_sys_bytes")+ag.scrape("go_memstats_other_sys_bytes")+ag.scrape("go_memstats_buck_hash_sys_bytes"))/(1<<20), "MB-runtime")
	b.ReportMetric(ag.scrape("go_goroutines"), "goroutines")
	b.ReportMetric((g1-g0)/benchRegisters/el.Seconds(), "polls/s")
	b.ReportMetric((k1-k0)/el.Seconds(), "commits/s")
	b.ReportMetric(100*(c1-c0).Seconds()/el.Seconds(), "%cpu")
	b.ReportMetric(rss/(1<<20), "MB-rss-anon")
	// Profiles after the measurement, so as not to weigh on it.
	if err := ag.profile("heap", 0, "modbus-agent.heap.pprof"); err != nil {
		b.Logf("no heap profile: %v", err)
	}
	if err := ag.profile("profile", 20*time.Second, "modbus-agent.cpu.pprof"); err != nil {
		b.Logf("no CPU profile: %v", err)
	}
	fmt.Printf("modbus agent: 1000 devices × 20 registers at 1s: %.0f samples/s read, %.0f sent in all; agent CPU %.1f%% of one core over %s, RssAnon %.1f MiB after %s (targets ≤ 10%%, ≤ 32 MB); profiles of the 20 s after in bench/modbus-agent.{cpu,heap}.pprof\n",
		(g1-g0)/el.Seconds(), sent, 100*(c1-c0).Seconds()/el.Seconds(), el.Round(time.Second), rss/(1<<20), (warmup + el).Round(time.Second))
}
