package bench

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/iot-producer/iot-producer/agent/config"
	"github.com/iot-producer/iot-producer/drivers"
	"github.com/iot-producer/iot-producer/drivers/opcua"
	"github.com/iot-producer/iot-producer/simulator/signal"
)

// startOPCUASim runs `iot-producer opcua simulate` in its own process (its
// CPU is not counted) with devices × tags variables updated every second,
// and returns its endpoint.
func startOPCUASim(b *testing.B, bin string, devices, tags int) string {
	b.Helper()
	cmd := exec.Command(bin, "opcua", "simulate", "-listen", "127.0.0.1:0", "-devices", strconv.Itoa(devices),
		"-tags", strconv.Itoa(tags), "-interval", "1s")
	out, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = cmd.Process.Signal(syscall.SIGTERM); _ = cmd.Wait() })
	var endpoint string
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		line := sc.Text()
		if line == "ready" {
			go func() { _, _ = io.Copy(io.Discard, out) }()
			return endpoint
		}
		if f := strings.Fields(line); len(f) > 1 && f[0] == "opcua" {
			endpoint = f[1]
		}
	}
	b.Fatal("the OPC UA simulator exited before it was ready")
	return ""
}

// benchOPCUA runs one driver on devices × tags nodes of the simulator in
// another process and reports samples/s, this process's CPU in percent of
// one core and its anonymous RSS over the measurement window.
func benchOPCUA(b *testing.B, mode string, devices, tags int) {
	bin := buildAgent(b)
	endpoint := startOPCUASim(b, bin, devices, tags)
	c := opcua.NewConfig()
	c.Endpoint, c.Mode = endpoint, mode
	c.PollInterval = config.Duration(time.Second)
	c.SecurityPolicy, c.AllowInsecure = "None", true
	c.Timeout = config.Duration(10 * time.Second)
	for d := range devices {
		for t := range tags {
			name := signal.TagProfile(t).Name
			dev := fmt.Sprintf("sim-%04d", d+1)
			c.Tags = append(c.Tags, opcua.Tag{Name: dev + "." + name, Address: "nsu=urn:iot-producer:simulator;s=" + dev + "." + name})
		}
	}
	d, err := opcua.NewDriver(opcua.Options{Name: "bench", Config: c, StateDir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	var samples, good atomic.Uint64
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- d.Run(ctx, func(ss []drivers.Sample) {
			samples.Add(uint64(len(ss)))
			for i := range ss {
				if ss[i].Quality == drivers.QualityGood {
					good.Add(1)
				}
			}
		})
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			b.Error(err)
		}
	}()
	// Warm up until every node has reported once (subscriptions created,
	// first values in).
	n := uint64(devices * tags)
	deadline := time.Now().Add(2 * time.Minute)
	for good.Load() < n {
		if time.Now().After(deadline) {
			b.Fatalf("only %d good samples of %d nodes after 2 minutes; status %+v", good.Load(), n, d.Status())
		}
		time.Sleep(100 * time.Millisecond) // polling a counter while warming up
	}
	time.Sleep(warmup) // let the first burst pass
	pid := os.Getpid()
	runtime.GC()
	b.ResetTimer()
	s0, c0, t0 := samples.Load(), procCPU(b, pid), time.Now()
	time.Sleep(window) // the measurement window
	s1, c1, el := samples.Load(), procCPU(b, pid), time.Since(t0)
	b.StopTimer()
	st := d.Status()
	if st.Recoveries > 0 || st.ItemsBad > 0 {
		b.Errorf("status during the run: %+v", st)
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	b.ReportMetric(float64(s1-s0)/el.Seconds(), "samples/s")
	b.ReportMetric(100*(c1-c0).Seconds()/el.Seconds(), "%cpu")
	b.ReportMetric(rssAnon(b, pid)/(1<<20), "MB-rss-anon")
	b.ReportMetric(float64(ms.HeapInuse)/(1<<20), "MB-heap")
	b.ReportMetric(float64(st.Subscriptions), "subscriptions")
}

// BenchmarkOPCUASubscribe: 10,000 monitored items (100 devices × 100
// variables) sampled and published every second, in 10 subscriptions.
func BenchmarkOPCUASubscribe(b *testing.B) { benchOPCUA(b, "subscribe", 100, 100) }

// BenchmarkOPCUAPoll: 2,000 nodes (20 devices × 100 variables) read every
// second in batches of the server's MaxNodesPerRead (32 for gopcua's).
func BenchmarkOPCUAPoll(b *testing.B) { benchOPCUA(b, "poll", 20, 100) }

// BenchmarkOPCUAAgent measures the whole agent binary (subscriptions,
// sequencing, durable buffering, sending to the real Kafka broker `make
// bench` starts) on 10,000 monitored items at 1s — 10 PLCs of 1,000 items,
// one session each — with the simulator in another process: samples/s
// read, the agent's CPU in percent of one core over a minute and its
// anonymous RSS at the end of it.
func BenchmarkOPCUAAgent(b *testing.B) {
	const plcs, tags = 10, 1000
	bin := buildAgent(b)
	endpoint := startOPCUASim(b, bin, plcs, tags)
	brokers := kafkaBrokers(b)
	topic := fmt.Sprintf("bench-opcua-%d", time.Now().UnixNano())
	createTopic(b, brokers, topic, 1)
	dir := b.TempDir()
	var cfg strings.Builder
	fmt.Fprintf(&cfg, "gateway: {id: gw-bench, state_dir: %q}\n", dir)
	fmt.Fprintf(&cfg, "producer: {brokers: [%s], topic: %s}\n", strings.Join(brokers, ", "), topic)
	cfg.WriteString("telemetry: {metrics_listen: \"127.0.0.1:0\", health_listen: \"127.0.0.1:0\", pprof_listen: \"off\"}\n")
	cfg.WriteString("plcs:\n")
	for d := range plcs {
		dev := fmt.Sprintf("sim-%04d", d+1)
		fmt.Fprintf(&cfg, "  - name: %s\n    driver: opcua\n    endpoint: %s\n    mode: subscribe\n    poll_interval: 1s\n    security_policy: None\n    allow_insecure: true\n    timeout: 10s\n    tags:\n", dev, endpoint)
		for t := range tags {
			name := signal.TagProfile(t).Name
			fmt.Fprintf(&cfg, "      - {name: %s, address: \"nsu=urn:iot-producer:simulator;s=%s.%s\"}\n", name, dev, name)
		}
	}
	ag := startAgent(b, bin, dir, cfg.String())
	generated := func() float64 { return ag.scrape("device_data_generated_total") }
	deadline := time.Now().Add(2 * time.Minute)
	for generated() < plcs*tags {
		if time.Now().After(deadline) {
			b.Fatalf("only %.0f samples after 2 minutes", generated())
		}
		time.Sleep(200 * time.Millisecond) // polling a counter while warming up
	}
	time.Sleep(warmup) // let the first burst pass
	b.ResetTimer()
	g0, c0, t0 := generated(), ag.cpu(), time.Now()
	time.Sleep(agentWindow) // the measurement window
	g1, c1, el := generated(), ag.cpu(), time.Since(t0)
	rss := ag.rssAnon()
	b.StopTimer()
	sent := ag.scrape("kafka_messages_sent_total")
	recoveries := ag.scrape("iot_driver_recoveries_total")
	b.ReportMetric((g1-g0)/el.Seconds(), "samples/s")
	b.ReportMetric(100*(c1-c0).Seconds()/el.Seconds(), "%cpu")
	b.ReportMetric(rss/(1<<20), "MB-rss-anon")
	b.ReportMetric(ag.scrape("go_memstats_heap_inuse_bytes")/(1<<20), "MB-heap")
	fmt.Printf("opcua agent: %d PLCs × %d monitored items at 1s: %.0f samples/s read, %.0f sent in all, %.0f recoveries; agent CPU %.1f%% of one core over %s, RssAnon %.1f MiB (target ≤ 10%%)\n",
		plcs, tags, (g1-g0)/el.Seconds(), sent, recoveries, 100*(c1-c0).Seconds()/el.Seconds(), el.Round(time.Second), rss/(1<<20))
}
