package bench

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/iot-producer/iot-producer/agent/config"
	"github.com/iot-producer/iot-producer/buffer"
	"github.com/iot-producer/iot-producer/record"
	"github.com/iot-producer/iot-producer/uplink"
	"github.com/iot-producer/iot-producer/uplink/mqtt"
)

// startMosquitto runs Mosquitto in its own process with
// scripts/mosquitto.sh on port (from 25000-25999) and returns its URL.
func startMosquitto(b *testing.B, port int) string {
	b.Helper()
	script, err := filepath.Abs("../scripts/mosquitto.sh")
	if err != nil {
		b.Fatal(err)
	}
	dir := b.TempDir()
	run := func(args ...string) {
		var out bytes.Buffer
		cmd := exec.Command(script, append(args, "--port", strconv.Itoa(port), "--dir", dir)...)
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Run(); err != nil {
			b.Fatalf("mosquitto.sh %v: %v\n%s", args, err, &out)
		}
	}
	run("start")
	b.Cleanup(func() { run("stop") })
	return fmt.Sprintf("tcp://127.0.0.1:%d", port)
}

// mqttPipeline is the path of a sample from the buffer to the broker: a
// bbolt buffer with one queue, the send loop with the mqtt section's
// default settings, and the MQTT sink.
type mqttPipeline struct {
	buf  *buffer.Buffer
	q    *buffer.Queue
	sink *mqtt.Sink

	mu    sync.Mutex
	acked int
	lat   []time.Duration // read → PUBACK of each acknowledged sample
}

func newMQTTPipeline(b *testing.B, broker string, payload string) (*mqttPipeline, func()) {
	b.Helper()
	buf, err := buffer.Open(filepath.Join(b.TempDir(), "buffer.db"), buffer.Options{Queues: []string{"mqtt"}})
	if err != nil {
		b.Fatal(err)
	}
	cfg := mqtt.NewConfig()
	cfg.Broker = broker
	if payload == "sparkplug" {
		cfg.Payload = "sparkplug"
		cfg.Sparkplug.GroupID = "bench"
	}
	cfg.Derive(config.Gateway{ID: "gw-bench"})
	opts, err := cfg.Options("gw-bench")
	if err != nil {
		b.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	opts.Logger = log
	sink, err := mqtt.New(opts)
	if err != nil {
		b.Fatal(err)
	}
	p := &mqttPipeline{buf: buf, q: buf.Queue("mqtt"), sink: sink}
	ls := cfg.Loop()
	loop := uplink.New(p.q, sink, uplink.Options{
		BatchSize: ls.BatchSize, FlushInterval: ls.FlushInterval, Workers: ls.Workers, LiveWindow: ls.LiveWindow,
		Logger: log,
		Metrics: uplink.Metrics{Sent: func(_ uplink.Lane, n int, _ time.Duration, readTimes []time.Time) {
			now := time.Now()
			p.mu.Lock()
			p.acked += n
			for _, t := range readTimes {
				p.lat = append(p.lat, now.Sub(t))
			}
			p.mu.Unlock()
		}},
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- loop.Run(ctx) }()
	return p, func() {
		cancel()
		if err := <-done; err != nil {
			b.Error(err)
		}
		sink.Close()
		if err := buf.Close(); err != nil {
			b.Error(err)
		}
	}
}

// offer commits rate samples a second for d (1,000 devices × 10 tags, a
// group commit every 5ms as ingest does, each sample stamped with its read
// time as it is made) and returns how many it committed.
func (p *mqttPipeline) offer(b *testing.B, rate int, d time.Duration) int {
	b.Helper()
	const devices, tags = 1000, 10
	seq := map[int]uint64{}
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	start := time.Now()
	n := 0
	var value, env []byte
	for now := range tick.C {
		if now.Sub(start) > d {
			break
		}
		// What is due by now: a late tick catches up.
		due := int(now.Sub(start).Seconds()*float64(rate)) - n
		recs := make([][]byte, 0, max(due, 0))
		for range due {
			dev, tag := n%devices, (n/devices)%tags
			seq[n%(devices*tags)]++
			read := time.Now()
			f := record.Fields{
				Gateway: "gw-bench", Epoch: "bench", Device: fmt.Sprintf("dev-%04d", dev), Tag: fmt.Sprintf("tag-%d", tag),
				Seq: seq[n%(devices*tags)], Type: record.TypeFloat, Float: float64(n) / 7, Quality: record.QualityGood, ReadTime: read,
			}
			value = record.AppendJSON(value[:0], &f)
			env = record.AppendEnvelope(env[:0], f.Device, read, f.Epoch, value)
			recs = append(recs, bytes.Clone(env))
			n++
		}
		if err := p.buf.Append(recs, nil); err != nil {
			b.Fatal(err)
		}
	}
	return n
}

// BenchmarkMQTTThroughput fills the buffer with 300,000 records and
// reports how many a second the MQTT sink gets acknowledged by Mosquitto
// (its own process, QoS 1, the mqtt section's defaults), with JSON
// payloads and with Sparkplug B (one DDATA a sample, encoded at send time).
func BenchmarkMQTTThroughput(b *testing.B) {
	for i, payload := range []string{"json", "sparkplug"} {
		b.Run(payload, func(b *testing.B) {
			broker := startMosquitto(b, 25890+2*i)
			p, stop := newMQTTPipeline(b, broker, payload)
			defer stop()
			const total = 300000
			recs := make([][]byte, 0, 1000)
			for i := range total {
				read := time.Now()
				f := record.Fields{Gateway: "gw-bench", Epoch: "bench", Device: fmt.Sprintf("dev-%04d", i%1000), Tag: "t",
					Seq: uint64(i/1000 + 1), Type: record.TypeFloat, Float: float64(i), Quality: record.QualityGood, ReadTime: read}
				recs = append(recs, record.AppendEnvelope(nil, f.Device, read, f.Epoch, record.AppendJSON(nil, &f)))
				if len(recs) == cap(recs) {
					if err := p.buf.Append(recs, nil); err != nil {
						b.Fatal(err)
					}
					recs = recs[:0]
				}
			}
			start := time.Now()
			for {
				p.mu.Lock()
				acked := p.acked
				p.mu.Unlock()
				if acked >= total {
					break
				}
				if time.Since(start) > 5*time.Minute {
					b.Fatalf("only %d of %d acknowledged in 5 minutes", acked, total)
				}
				time.Sleep(50 * time.Millisecond) // progress poll
			}
			el := time.Since(start)
			rate := float64(total) / el.Seconds()
			b.ReportMetric(rate, "samples/s")
			fmt.Printf("MQTT throughput (%s), QoS 1, Mosquitto in its own process: %d records acknowledged in %s: %.0f samples/s\n", payload, total, el.Round(time.Millisecond), rate)
		})
	}
}

// BenchmarkMQTTLatency commits 10,000 samples/s for 30 s and reports
// p50/p95/p99 of read → PUBACK (the loop's acknowledgement, which follows
// the broker's PUBACK of the sample).
func BenchmarkMQTTLatency(b *testing.B) {
	broker := startMosquitto(b, 25894)
	p, stop := newMQTTPipeline(b, broker, "json")
	offered := p.offer(b, 10000, 30*time.Second)
	deadline := time.Now().Add(time.Minute)
	for {
		p.mu.Lock()
		acked := p.acked
		p.mu.Unlock()
		if acked >= offered || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond) // progress poll
	}
	stop()
	p.mu.Lock()
	lat := p.lat
	p.mu.Unlock()
	if len(lat) < offered {
		b.Fatalf("only %d of %d samples acknowledged", len(lat), offered)
	}
	p50, p95, p99 := quantile(lat, .5), quantile(lat, .95), quantile(lat, .99)
	b.ReportMetric(float64(p50.Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(p95.Microseconds())/1000, "p95-ms")
	b.ReportMetric(float64(p99.Microseconds())/1000, "p99-ms")
	fmt.Printf("MQTT latency at 10,000 samples/s, read → PUBACK, %d samples: p50 %s p95 %s p99 %s\n",
		len(lat), p50.Round(10*time.Microsecond), p95.Round(10*time.Microsecond), p99.Round(10*time.Microsecond))
}
