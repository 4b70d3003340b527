package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"golang.org/x/term"

	"github.com/iot-producer/iot-producer/agent"
	"github.com/iot-producer/iot-producer/agent/config"
	"github.com/iot-producer/iot-producer/configs"
	"github.com/iot-producer/iot-producer/drivers"
	"github.com/iot-producer/iot-producer/drivers/opcua"
	simopcua "github.com/iot-producer/iot-producer/simulator/opcua"
	simsignal "github.com/iot-producer/iot-producer/simulator/signal"
	"github.com/iot-producer/iot-producer/telemetry"
	"github.com/iot-producer/iot-producer/uplink/kafka"
)

// cmdDemo runs the whole pipeline on the embedded demo configuration: the
// simulator, a buffer in a temporary directory, and — unless --brokers
// names a real Kafka — an embedded Kafka-compatible dev broker.
func cmdDemo(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	brokers := fs.String("brokers", "", "comma-separated Kafka brokers; empty starts the embedded dev broker")
	cfgPath := fs.String("c", "", "configuration file instead of the embedded demo configuration")
	devices := fs.Int("devices", 0, "simulated devices (overrides device.count)")
	tags := fs.Int("tags", 0, "tags per device (overrides device.tags_per_device)")
	interval := fs.Duration("interval", 0, "sample interval (overrides device.sample_interval)")
	duration := fs.Duration("duration", 0, "stop after this long (0: run until Ctrl-C)")
	metricsAddr := fs.String("metrics-listen", "", "override telemetry.metrics_listen (default :8080)")
	healthAddr := fs.String("health-listen", "", "override telemetry.health_listen (default :8081)")
	pprofAddr := fs.String("pprof-listen", "", "override telemetry.pprof_listen (default 127.0.0.1:6060; off disables it)")
	plain := fs.Bool("plain", false, "print plain lines even on a terminal")
	opcuaDevices := fs.Int("opcua", 2, "also serve this many simulated devices over OPC UA (the simulator's OPC UA server on a loopback port) and read them with the OPC UA driver by subscription; 0 turns it off")
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}

	var cfg *config.Config
	var err error
	if *cfgPath != "" {
		cfg, err = config.Load(*cfgPath)
	} else {
		cfg, err = config.Parse(configs.Demo, "embedded configs/demo.yaml")
	}
	if err != nil {
		fmt.Fprintf(stderr, "demo: %v\n", err)
		return exitUsage
	}
	if *devices > 0 {
		cfg.Device.Count = *devices
	}
	if *tags > 0 {
		cfg.Device.TagsPerDevice = *tags
	}
	if *interval > 0 {
		cfg.Device.SampleInterval = config.Duration(*interval)
	}
	if *metricsAddr != "" {
		cfg.Telemetry.MetricsListen = *metricsAddr
	}
	if *healthAddr != "" {
		cfg.Telemetry.HealthListen = *healthAddr
	}
	switch *pprofAddr {
	case "":
	case "off":
		cfg.Telemetry.PprofListen = ""
	default:
		cfg.Telemetry.PprofListen = *pprofAddr
	}
	producer := cfg.Sink("producer")
	if producer == nil || !producer.Enabled {
		fmt.Fprintln(stderr, "demo: the configuration has no enabled producer (Kafka) section")
		return exitConfig
	}
	kc := producer.Settings.(*kafka.Config)

	dir, err := os.MkdirTemp("", "iot-producer-demo-")
	if err != nil {
		fmt.Fprintf(stderr, "demo: %v\n", err)
		return exitFailure
	}
	defer os.RemoveAll(dir)
	cfg.Buffer.Path = filepath.Join(dir, "buffer.db")

	var logBuf lineLog
	log := slog.New(slog.NewTextHandler(&logBuf, &slog.HandlerOptions{Level: slog.LevelWarn}))

	brokerNote := ""
	if *brokers != "" {
		kc.Brokers = strings.Split(*brokers, ",")
		brokerNote = "Kafka at " + *brokers
	} else {
		cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.AllowAutoTopicCreation(), kfake.DefaultNumPartitions(3))
		if err != nil {
			fmt.Fprintf(stderr, "demo: start the embedded dev broker: %v\n", err)
			return exitFailure
		}
		defer cluster.Close()
		kc.Brokers = cluster.ListenAddrs()
		brokerNote = "embedded dev broker (kfake) at " + strings.Join(kc.Brokers, ",") +
			" — for trying things out only; it is not Apache Kafka and keeps nothing"
	}

	opcuaNote := ""
	if *opcuaDevices > 0 {
		srv, note, err := demoOPCUA(cfg, *opcuaDevices)
		if err != nil {
			fmt.Fprintf(stderr, "demo: %v\n", err)
			return exitFailure
		}
		defer func() { _ = srv.Close() }()
		opcuaNote = note
	}

	latest := newLatestValues()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if *duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, *duration)
		defer cancel()
	}

	ready := make(chan struct{})
	a, err := agent.New(cfg, agent.Options{Logger: log, Version: version, Tap: latest.observe, OnReady: func() { close(ready) }, BufferIsolate: bufferIsolate()})
	if err != nil {
		fmt.Fprintf(stderr, "demo: %v\n", err)
		return exitFailure
	}
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	select {
	case <-ready:
	case err := <-done:
		fmt.Fprintf(stderr, "demo: %v\n", err)
		return exitFailure
	}

	addrs := a.Addrs()
	header := []string{
		"iot-producer demo — Ctrl-C stops it",
		fmt.Sprintf("simulator: %d devices × %d tags every %s", cfg.Device.Count, cfg.Device.TagsPerDevice, cfg.Device.SampleInterval),
		opcuaNote,
		"sink:      " + brokerNote + ", topic " + kc.Topic,
		"buffer:    " + cfg.Buffer.Path,
		fmt.Sprintf("telemetry: http://%s/metrics  http://%s/config  http://%s/ready", hostPort(addrs.Metrics), hostPort(addrs.Metrics), hostPort(addrs.Health)),
	}
	screen := term.IsTerminal(int(os.Stdout.Fd())) && stdout == io.Writer(os.Stdout) && !*plain
	view := &demoView{out: stdout, screen: screen, header: header, reg: a.Metrics(), latest: latest, log: &logBuf}
	header = slices.DeleteFunc(header, func(h string) bool { return h == "" })
	if !screen {
		for _, h := range header {
			fmt.Fprintln(stdout, h)
		}
	}
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case err := <-done:
			view.draw()
			for _, l := range logBuf.last(5) {
				fmt.Fprintln(stderr, l)
			}
			fmt.Fprintln(stdout, "demo stopped")
			if err != nil {
				fmt.Fprintf(stderr, "demo: %v\n", err)
				return exitFailure
			}
			return exitOK
		case <-tick.C:
			view.draw()
		}
	}
}

// demoOPCUA starts the simulator's OPC UA server with n devices on a
// loopback port and adds a PLC per device to cfg, read by subscription.
// Security is None: the server listens on loopback only, and a secured
// session would need the simulator's certificate in the trust list of the
// gateway's state directory, which the demo does not touch.
func demoOPCUA(cfg *config.Config, n int) (*simopcua.Server, string, error) {
	tags := max(cfg.Device.TagsPerDevice, 1)
	srv, err := simopcua.New(simopcua.Options{Devices: n, TagsPerDevice: tags, NamePrefix: "opcua",
		Interval: cfg.Device.SampleInterval.Std(), Seed: cfg.Device.Seed, Variation: cfg.Device.DataVariation})
	if err != nil {
		return nil, "", err
	}
	if err := srv.Start(context.Background()); err != nil {
		return nil, "", err
	}
	for d := range n {
		dev := fmt.Sprintf("opcua-%04d", d+1)
		c := opcua.NewConfig()
		c.Endpoint = srv.Endpoint()
		c.PollInterval = cfg.Device.SampleInterval
		c.SecurityPolicy, c.AllowInsecure = "None", true
		for t := range tags {
			name := simsignal.TagProfile(t).Name
			c.Tags = append(c.Tags, opcua.Tag{Name: name, Address: srv.NodeURI(dev, name)})
		}
		cfg.PLCs = append(cfg.PLCs, config.PLC{Name: dev, Driver: "opcua", Settings: c})
	}
	note := fmt.Sprintf("opc ua:    %d devices × %d tags served at %s, read by subscription (iot-producer opcua browse -endpoint %s -security-policy None -allow-insecure)",
		n, tags, srv.Endpoint(), srv.Endpoint())
	return srv, note, nil
}

func hostPort(addr string) string {
	if strings.HasPrefix(addr, ":") || strings.HasPrefix(addr, "[::]:") || strings.HasPrefix(addr, "0.0.0.0:") {
		return "localhost:" + addr[strings.LastIndex(addr, ":")+1:]
	}
	return addr
}

// demoView renders the numbers, read back from the metrics registry.
type demoView struct {
	out    io.Writer
	screen bool
	header []string
	reg    *telemetry.Metrics
	latest *latestValues
	log    *lineLog

	lastAt                 time.Time
	lastGenerated, lastAck float64
}

func (v *demoView) draw() {
	now := time.Now()
	snap := telemetry.Snapshot(v.reg)
	gen := snap.Sum("device_data_generated_total")
	acked := snap.Sum("kafka_messages_sent_total")
	committed := snap.Sum("iot_ingest_samples_committed_total")
	depth := snap.Sum("kafka_producer_buffer_depth")
	errs := snap.Sum("kafka_send_errors_total")
	var genRate, ackRate float64
	if !v.lastAt.IsZero() {
		secs := now.Sub(v.lastAt).Seconds()
		genRate = (gen - v.lastGenerated) / secs
		ackRate = (acked - v.lastAck) / secs
	}
	v.lastAt, v.lastGenerated, v.lastAck = now, gen, acked
	p95 := snap.Quantile("kafka_send_duration_seconds", 0.95)

	if v.screen {
		var b strings.Builder
		b.WriteString("\x1b[H\x1b[2J")
		for _, h := range v.header {
			b.WriteString(h + "\n")
		}
		fmt.Fprintf(&b, "\nsamples/s   %10.0f    generated %12.0f    committed %12.0f\n", genRate, gen, committed)
		fmt.Fprintf(&b, "acked/s     %10.0f    acked     %12.0f    send errors %10.0f\n", ackRate, acked, errs)
		fmt.Fprintf(&b, "buffer depth %9.0f records    send p95 %s\n\nlatest values:\n", depth, fmtSeconds(p95))
		for _, line := range v.latest.lines(8) {
			b.WriteString("  " + line + "\n")
		}
		if l := v.log.last(3); len(l) > 0 {
			b.WriteString("\nlast warnings:\n")
			for _, line := range l {
				b.WriteString("  " + line + "\n")
			}
		}
		fmt.Fprint(v.out, b.String())
		return
	}
	fmt.Fprintf(v.out, "%s samples/s=%.0f generated=%.0f committed=%.0f acked/s=%.0f acked=%.0f depth=%.0f errors=%.0f send_p95=%s latest: %s\n",
		now.Format("15:04:05"), genRate, gen, committed, ackRate, acked, depth, errs, fmtSeconds(p95), strings.Join(v.latest.lines(3), "; "))
}

func fmtSeconds(s float64) string {
	if s != s { // NaN: nothing observed yet
		return "-"
	}
	return (time.Duration(s * float64(time.Second))).Round(100 * time.Microsecond).String()
}

// latestValues keeps the newest value of each series the demo shows.
type latestValues struct {
	mu     sync.Mutex
	values map[string]drivers.Sample
}

func newLatestValues() *latestValues { return &latestValues{values: map[string]drivers.Sample{}} }

// observe keeps the latest sample of the first device's tags and of a few
// others; it copies what it keeps.
func (l *latestValues) observe(samples []drivers.Sample) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, s := range samples {
		key := s.Device + "/" + s.Tag
		if _, ok := l.values[key]; ok || len(l.values) < 16 {
			l.values[key] = s
		}
	}
}

func (l *latestValues) lines(n int) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	keys := make([]string, 0, len(l.values))
	for k := range l.values {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	keys = keys[:min(n, len(keys))]
	out := make([]string, 0, len(keys))
	for _, k := range keys {
		s := l.values[k]
		if !s.HasValue() {
			out = append(out, k+"=(bad: no value)")
			continue
		}
		out = append(out, fmt.Sprintf("%s=%s", k, formatValue(s.Value)))
	}
	return out
}

func formatValue(v drivers.Value) string {
	switch v.Kind {
	case drivers.KindFloat:
		return fmt.Sprintf("%.3f", v.F)
	case drivers.KindInt:
		return fmt.Sprint(v.I)
	case drivers.KindUint:
		return fmt.Sprint(v.U)
	case drivers.KindBool:
		return fmt.Sprint(v.B)
	}
	return fmt.Sprintf("%q", v.S)
}

// lineLog keeps the last log lines for display.
type lineLog struct {
	mu    sync.Mutex
	lines []string
}

func (l *lineLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, strings.Split(strings.TrimRight(string(p), "\n"), "\n")...)
	if len(l.lines) > 50 {
		l.lines = slices.Clone(l.lines[len(l.lines)-50:])
	}
	return len(p), nil
}

func (l *lineLog) last(n int) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.lines[max(0, len(l.lines)-n):])
}
