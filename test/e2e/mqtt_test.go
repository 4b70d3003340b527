//go:build e2e

package e2e

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/iot-producer/iot-producer/buffer"
	"github.com/iot-producer/iot-producer/internal/seqcheck"
	"github.com/iot-producer/iot-producer/record"
)

// The MQTT tests use ports 25000-25999.

// mosquitto is a broker started with scripts/mosquitto.sh --persist: its
// sessions and queued messages survive a stop and a start, so that what
// it acknowledged reaches the test's subscriber whatever happens to the
// broker.
type mosquitto struct {
	port int
	dir  string
}

func startMosquitto(t *testing.T, port int) *mosquitto {
	t.Helper()
	m := &mosquitto{port: port, dir: t.TempDir()}
	m.start(t)
	t.Cleanup(func() {
		_ = exec.Command(mosquittoScript(t), "stop", "--port", strconv.Itoa(port), "--dir", m.dir).Run()
	})
	return m
}

func mosquittoScript(t *testing.T) string {
	t.Helper()
	p, err := filepath.Abs("../../scripts/mosquitto.sh")
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func (m *mosquitto) run(t *testing.T, cmd string, args ...string) {
	t.Helper()
	var out bytes.Buffer
	c := exec.Command(mosquittoScript(t), append([]string{cmd, "--port", strconv.Itoa(m.port), "--dir", m.dir}, args...)...)
	c.Stdout, c.Stderr = &out, &out
	if err := c.Run(); err != nil {
		t.Fatalf("mosquitto.sh %s: %v\n%s", cmd, err, &out)
	}
}

func (m *mosquitto) start(t *testing.T) { t.Helper(); m.run(t, "start", "--persist") }
func (m *mosquitto) stop(t *testing.T)  { t.Helper(); m.run(t, "stop") }
func (m *mosquitto) url() string        { return fmt.Sprintf("tcp://127.0.0.1:%d", m.port) }

// mqttCollector subscribes to a topic filter on a persistent QoS 1
// session and keeps every payload.
type mqttCollector struct {
	mu       sync.Mutex
	payloads [][]byte
	topics   []string
	cl       paho.Client
}

func collectMQTT(t *testing.T, url, filter string) *mqttCollector {
	t.Helper()
	c := &mqttCollector{}
	o := paho.NewClientOptions().AddBroker(url).SetClientID(fmt.Sprintf("e2e-sub-%d", time.Now().UnixNano())).
		SetCleanSession(false).SetResumeSubs(true).SetAutoReconnect(true).SetConnectRetry(true).
		SetMaxReconnectInterval(200 * time.Millisecond).SetConnectRetryInterval(200 * time.Millisecond).
		SetOrderMatters(true)
	o.SetDefaultPublishHandler(func(_ paho.Client, m paho.Message) {
		c.mu.Lock()
		c.payloads = append(c.payloads, m.Payload())
		c.topics = append(c.topics, m.Topic())
		c.mu.Unlock()
	})
	o.SetOnConnectHandler(func(cl paho.Client) { cl.Subscribe(filter, 1, nil) })
	c.cl = paho.NewClient(o)
	if tok := c.cl.Connect(); !tok.WaitTimeout(30*time.Second) || tok.Error() != nil {
		t.Fatalf("subscriber: connect %s: %v", url, tok.Error())
	}
	// The subscription is made on connect; wait for its SUBACK by a
	// subscription of our own.
	if tok := c.cl.Subscribe(filter, 1, nil); !tok.WaitTimeout(30*time.Second) || tok.Error() != nil {
		t.Fatalf("subscriber: subscribe %s: %v", filter, tok.Error())
	}
	t.Cleanup(func() { c.cl.Disconnect(100) })
	return c
}

// verifyMQTT waits until the subscriber has every sequence number the
// gateway committed (the buffer in dir says which), and fails on any that
// never comes and on any record left in the buffer (the run ended with
// stopDrained).
func verifyMQTT(t *testing.T, c *mqttCollector, dir string) seqcheck.Report {
	t.Helper()
	checker := seqcheck.New()
	left, last, err := checker.AddBuffer(filepath.Join(dir, "buffer.db"), "mqtt")
	if err != nil {
		t.Fatal(err)
	}
	if left != 0 {
		t.Fatalf("%d records still in the mqtt queue after the agent drained and stopped: not delivered", left)
	}
	deadline := time.Now().Add(3 * time.Minute)
	added := 0
	for {
		c.mu.Lock()
		fresh := c.payloads[added:]
		c.mu.Unlock()
		for _, p := range fresh {
			if err := checker.Add(p); err != nil {
				t.Fatalf("subscriber got an undecodable record: %v", err)
			}
		}
		added += len(fresh)
		r := checker.Verify(last)
		if r.Missing == 0 || time.Now().After(deadline) {
			t.Logf("delivery over MQTT: %s (buffer drained)", r)
			if r.Missing != 0 || r.Unexpected != 0 {
				t.Fatalf("lost records: %s", r)
			}
			return r
		}
		time.Sleep(500 * time.Millisecond) // the subscriber catching up
	}
}

// mqttRateConfig is an agent at 5,000 samples/s (50 devices × 10 tags
// every 100ms) sending to MQTT only.
func mqttRateConfig(t *testing.T, dir, broker, extra string) string {
	t.Helper()
	return writeConfig(t, dir, fmt.Sprintf(`
gateway: {id: gw-e2e, state_dir: %q}
device: {count: 50, tags_per_device: 10, sample_interval: 100ms, seed: 7}
producer: {enabled: false}
mqtt:
  enabled: true
  broker: %s
  topic: iot/{gateway}/{device}/{tag}
%s
telemetry: {metrics_listen: "127.0.0.1:0", health_listen: "127.0.0.1:0", pprof_listen: "off"}
`, dir, broker, extra))
}

// sinkMetric scrapes a metric's series for one sink (label sink="...").
func (a *agentProc) sinkMetric(t *testing.T, name, sink string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + a.metrics + "/metrics")
	if err != nil {
		t.Fatalf("scrape: %v", err)
	}
	defer resp.Body.Close()
	var sum float64
	sc := bufio.NewScanner(resp.Body)
	label := `sink="` + sink + `"`
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name+"{") || !strings.Contains(line, label) {
			continue
		}
		v, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
		if err != nil {
			t.Fatalf("parse %q: %v", line, err)
		}
		sum += v
	}
	return sum
}

// waitSinkAcked waits until the sink's acknowledged records reach n.
func (a *agentProc) waitSinkAcked(t *testing.T, sink string, n float64, limit time.Duration) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for a.sinkMetric(t, "kafka_messages_sent_total", sink) < n {
		if time.Now().After(deadline) {
			t.Fatalf("%s: fewer than %.0f records acknowledged after %s:\n%s", sink, n, limit, a.tail(40))
		}
		select {
		case <-a.done:
			t.Fatalf("agent exited:\n%s", a.log())
		case <-time.After(100 * time.Millisecond): // scrape interval
		}
	}
}

// waitSinkDrained waits until the sink's queue is (nearly) empty.
func (a *agentProc) waitSinkDrained(t *testing.T, sink string, limit time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for a.sinkMetric(t, "kafka_producer_buffer_depth", sink) > 2000 {
		if time.Since(start) > limit {
			t.Fatalf("%s backlog not drained after %s:\n%s", sink, limit, a.tail(40))
		}
		time.Sleep(200 * time.Millisecond) // scrape interval
	}
	return time.Since(start)
}

// waitSinkReady polls /ready until the sink's component detail satisfies ok.
func (a *agentProc) waitSinkReady(t *testing.T, sink string, ok func(detail string) bool, limit time.Duration) {
	t.Helper()
	deadline := time.Now().Add(limit)
	var last string
	for time.Now().Before(deadline) {
		resp, err := http.Get("http://" + a.health + "/ready")
		if err != nil {
			t.Fatalf("GET /ready: %v", err)
		}
		var body struct {
			Components []struct{ Name, State, Detail string }
		}
		err = json.NewDecoder(resp.Body).Decode(&body)
		resp.Body.Close()
		if err != nil {
			t.Fatalf("/ready body: %v", err)
		}
		for _, c := range body.Components {
			if c.Name == "sink/"+sink {
				last = c.State + ": " + c.Detail
				if ok(c.Detail) {
					return
				}
			}
		}
		time.Sleep(200 * time.Millisecond) // poll interval
	}
	t.Fatalf("/ready never showed the expected sink/%s state; last %q\n%s", sink, last, a.tail(30))
}

// TestMQTTBrokerStoppedLosesNothing stops Mosquitto for E2E_OUTAGE (60s)
// while the agent sends 5,000 samples/s to it: /ready shows the sink
// backing off, the backlog drains once the broker is back, and a
// subscriber gets every committed sequence number.
func TestMQTTBrokerStoppedLosesNothing(t *testing.T) {
	m := startMosquitto(t, 25883)
	sub := collectMQTT(t, m.url(), "iot/#")
	dir := t.TempDir()
	a := startAgent(t, mqttRateConfig(t, dir, m.url(), ""))
	a.waitSinkAcked(t, "mqtt", 10000, time.Minute)

	m.stop(t)
	down := time.Now()
	a.waitSinkReady(t, "mqtt", func(d string) bool { return strings.Contains(d, "backing off") }, outage(t)+30*time.Second)
	time.Sleep(time.Until(down.Add(outage(t)))) // the rest of the outage
	backlog := a.sinkMetric(t, "kafka_producer_buffer_depth", "mqtt")
	m.start(t)
	drain := a.waitSinkDrained(t, "mqtt", 5*time.Minute)
	t.Logf("broker stopped for %s: %.0f records buffered, drained in %s", outage(t), backlog, drain.Round(100*time.Millisecond))
	a.waitSinkReady(t, "mqtt", func(d string) bool { return d == "sending" }, time.Minute)
	a.stopDrained(t, 5*time.Minute)
	r := verifyMQTT(t, sub, dir)
	t.Logf("0 lost, %d duplicates of %d sequence numbers", r.Duplicates, r.Expected)
}

// TestMQTTCrashesLoseNothing kills the agent with SIGKILL 20 times while
// it sends to MQTT, and restarts it on the same buffer.
func TestMQTTCrashesLoseNothing(t *testing.T) {
	m := startMosquitto(t, 25884)
	sub := collectMQTT(t, m.url(), "iot/#")
	dir := t.TempDir()
	cfg := mqttRateConfig(t, dir, m.url(), "")
	for i := range 20 {
		a := startAgent(t, cfg)
		a.waitSinkAcked(t, "mqtt", 1, time.Minute)
		time.Sleep(time.Duration(100+rand.IntN(1400)) * time.Millisecond) // a random moment mid-stream
		if code := a.stop(t, syscall.SIGKILL, 10*time.Second); code != -1 {
			t.Fatalf("crash %d: exit code %d, want killed", i+1, code)
		}
	}
	a := startAgent(t, cfg)
	a.waitSinkAcked(t, "mqtt", 10000, time.Minute)
	a.stopDrained(t, 5*time.Minute)
	r := verifyMQTT(t, sub, dir)
	t.Logf("20 SIGKILLs: %d sequence numbers committed, 0 lost, %d duplicates", r.Expected, r.Duplicates)
}

// deliveryMean returns the sink's sample delivery time (read → ack)
// summed and counted so far, for means over a stretch of time.
func (a *agentProc) deliveryMean(t *testing.T, sink string) (sum, count float64) {
	t.Helper()
	return a.sinkMetric(t, "iot_sample_delivery_seconds_sum", sink), a.sinkMetric(t, "iot_sample_delivery_seconds_count", sink)
}

// watchOther samples the other sink while one is down: the most records
// its queue held, and its mean delivery time over the stretch.
func (a *agentProc) watchOther(t *testing.T, sink string, d time.Duration) (maxDepth, meanMs, acked float64) {
	t.Helper()
	s0, c0 := a.deliveryMean(t, sink)
	end := time.Now().Add(d)
	for time.Now().Before(end) {
		maxDepth = max(maxDepth, a.sinkMetric(t, "kafka_producer_buffer_depth", sink))
		time.Sleep(200 * time.Millisecond) // scrape interval
	}
	s1, c1 := a.deliveryMean(t, sink)
	if c1 > c0 {
		meanMs = (s1 - s0) / (c1 - c0) * 1000
	}
	return maxDepth, meanMs, c1 - c0
}

// TestKafkaAndMQTTSideBySide sends 5,000 samples/s to Kafka and to MQTT at
// once, then stops the Kafka broker for E2E_OUTAGE (60s), and once it is
// back and drained, Mosquitto for as long. The sink that stays up keeps
// up: its queue never holds more than the live window's worth (it never
// falls into backlog) and its delivery time is reported beside the one
// before the outage. Afterwards both have every sequence number.
func TestKafkaAndMQTTSideBySide(t *testing.T) {
	// kafka.sh puts the controller on P+1000: 26160.
	c := startCluster(t, "--port", "25160")
	m := startMosquitto(t, 25887)
	sub := collectMQTT(t, m.url(), "iot/#")
	topic := fmt.Sprintf("e2e-side-by-side-%d", time.Now().UnixNano())
	dir := t.TempDir()
	cfg := writeConfig(t, dir, fmt.Sprintf(`
gateway: {id: gw-e2e, state_dir: %q}
device: {count: 50, tags_per_device: 10, sample_interval: 100ms, seed: 5}
producer:
  brokers: [%s]
  topic: %s
mqtt:
  enabled: true
  broker: %s
telemetry: {metrics_listen: "127.0.0.1:0", health_listen: "127.0.0.1:0", pprof_listen: "off"}
`, dir, strings.Join(c.brokers(), ", "), topic, m.url()))
	a := startAgent(t, cfg)
	a.waitSinkAcked(t, "kafka", 10000, time.Minute)
	a.waitSinkAcked(t, "mqtt", 10000, time.Minute)
	// 5 s of samples: past that, the live lane would have jumped and left
	// a backlog.
	const bound = 25000
	for _, sink := range []string{"kafka", "mqtt"} {
		_, baseMs, _ := a.watchOther(t, sink, 10*time.Second)
		t.Logf("%s before any outage: mean read → ack %.1f ms", sink, baseMs)
	}

	for _, tc := range []struct {
		down, other string
		stop, start func()
	}{
		{"kafka", "mqtt", func() { c.script(t, "stop-node", "1", "--dir", c.dir) }, func() { c.script(t, "start-node", "1", "--dir", c.dir) }},
		{"mqtt", "kafka", func() { m.stop(t) }, func() { m.start(t) }},
	} {
		tc.stop()
		depth, meanMs, acked := a.watchOther(t, tc.other, outage(t))
		backlog := a.sinkMetric(t, "kafka_producer_buffer_depth", tc.down)
		tc.start()
		drain := a.waitSinkDrained(t, tc.down, 5*time.Minute)
		t.Logf("%s down for %s: %s acknowledged %.0f records, mean read → ack %.1f ms, its queue at most %.0f; %s held %.0f and drained in %s",
			tc.down, outage(t), tc.other, acked, meanMs, depth, tc.down, backlog, drain.Round(100*time.Millisecond))
		if depth > bound {
			t.Errorf("%s fell behind while %s was down: %.0f records queued", tc.other, tc.down, depth)
		}
		if acked == 0 {
			t.Errorf("%s acknowledged nothing while %s was down", tc.other, tc.down)
		}
		a.waitSinkReady(t, tc.down, func(d string) bool { return d == "sending" }, time.Minute)
	}
	a.stopDrained(t, 5*time.Minute)
	verifyDelivery(t, c.brokers(), topic, dir)
	verifyMQTT(t, sub, dir)
}

// nodeModules is where scripts/ci-deps.sh installs the npm packages.
func nodeModules(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("IOT_PRODUCER_NODE_DIR")
	if dir == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			t.Fatal(err)
		}
		dir = filepath.Join(home, ".cache", "iot-producer", "node")
	}
	mods := filepath.Join(dir, "node_modules")
	if _, err := os.Stat(filepath.Join(mods, "sparkplug-payload", "package.json")); err != nil {
		t.Fatalf("the npm package sparkplug-payload is not installed in %s: run scripts/ci-deps.sh (%v)", dir, err)
	}
	return mods
}

// nodeMessage is one Sparkplug message as sparkplug-payload decoded it.
type nodeMessage struct {
	Topic   string `json:"topic"`
	Payload struct {
		Timestamp string       `json:"timestamp"`
		Seq       *string      `json:"seq"`
		Metrics   []nodeMetric `json:"metrics"`
	} `json:"payload"`
}

type nodeMetric struct {
	Name         string          `json:"name"`
	Alias        string          `json:"alias"`
	Timestamp    string          `json:"timestamp"`
	Type         string          `json:"type"`
	Value        json.RawMessage `json:"value"`
	IsHistorical bool            `json:"isHistorical"`
	Properties   map[string]struct {
		Type  string          `json:"type"`
		Value json.RawMessage `json:"value"`
	} `json:"properties"`
}

// decodeWithNode decodes the collected messages with sparkplug-payload.
// A message identical to one already seen (the broker delivering again
// what the subscriber had not acknowledged when it stopped) is left out.
func decodeWithNode(t *testing.T, c *mqttCollector) []nodeMessage {
	t.Helper()
	var in bytes.Buffer
	seen := map[string]bool{}
	c.mu.Lock()
	for i, p := range c.payloads {
		line := fmt.Sprintf("%s\t%s\n", c.topics[i], base64.StdEncoding.EncodeToString(p))
		if !seen[line] {
			seen[line] = true
			in.WriteString(line)
		}
	}
	c.mu.Unlock()
	script, err := filepath.Abs("testdata/sparkplug-decode.js")
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("node", script)
	cmd.Env = append(os.Environ(), "NODE_PATH="+nodeModules(t))
	cmd.Stdin = &in
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("node sparkplug-decode.js: %v\n%s", err, &stderr)
	}
	var msgs []nodeMessage
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(nil, 16<<20)
	for sc.Scan() {
		var m nodeMessage
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("decoder output %q: %v", sc.Text(), err)
		}
		msgs = append(msgs, m)
	}
	return msgs
}

// TestSparkplugDecodedByNode sends to Kafka (JSON) and to MQTT as
// Sparkplug B at once, restarts Mosquitto in between and asks for a
// rebirth, then decodes every Sparkplug message with the npm package
// sparkplug-payload and checks it as a host would: seq 0 on NBIRTH and +1
// (mod 256) after, bdSeq in NBIRTH, a DBIRTH naming each alias before a
// device's DDATA in every session, data types as born, backlog marked
// historical; every DDATA's value, type and time stamp equal the Kafka
// record of the same series and sequence number; and every committed
// sequence number came as DDATA, with nothing left in the buffer.
func TestSparkplugDecodedByNode(t *testing.T) {
	c := startCluster(t, "--port", "25170") // controller on 26170
	m := startMosquitto(t, 25888)
	sub := collectMQTT(t, m.url(), "spBv1.0/#")
	topic := fmt.Sprintf("e2e-sparkplug-%d", time.Now().UnixNano())
	dir := t.TempDir()
	cfg := writeConfig(t, dir, fmt.Sprintf(`
gateway: {id: gw-e2e, state_dir: %q}
device: {count: 10, tags_per_device: 4, sample_interval: 100ms, seed: 3}
producer: {brokers: [%s], topic: %s}
mqtt:
  enabled: true
  broker: %s
  payload: sparkplug
  sparkplug: {group_id: plant}
telemetry: {metrics_listen: "127.0.0.1:0", health_listen: "127.0.0.1:0", pprof_listen: "off"}
`, dir, strings.Join(c.brokers(), ", "), topic, m.url()))
	a := startAgent(t, cfg)
	a.waitSinkAcked(t, "mqtt", 2000, time.Minute)

	m.stop(t)
	a.waitSinkReady(t, "mqtt", func(d string) bool { return strings.Contains(d, "backing off") }, time.Minute)
	time.Sleep(10 * time.Second) // a backlog builds up, sent as historical
	m.start(t)
	acked := a.sinkMetric(t, "kafka_messages_sent_total", "mqtt")
	a.waitSinkAcked(t, "mqtt", acked+6000, 2*time.Minute)

	// A host asks for a rebirth.
	cmd := nodeRebirth(t)
	if tok := sub.cl.Publish("spBv1.0/plant/NCMD/gw-e2e", 1, false, cmd); !tok.WaitTimeout(30*time.Second) || tok.Error() != nil {
		t.Fatalf("NCMD: %v", tok.Error())
	}
	acked = a.sinkMetric(t, "kafka_messages_sent_total", "mqtt")
	a.waitSinkAcked(t, "mqtt", acked+2000, time.Minute)
	a.stopDrained(t, 5*time.Minute)
	// The JSON records: what Kafka has; nothing may be left for it.
	kafkaRecs := map[string]record.Fields{} // "device/tag/seq"
	for _, recs := range readModbusTopic(t, c.brokers(), topic) {
		for _, f := range recs {
			kafkaRecs[fmt.Sprintf("%s/%s/%d", f.Device, f.Tag, f.Seq)] = f
		}
	}
	if left := bufferedFields(t, filepath.Join(dir, "buffer.db"), "kafka"); len(left) != 0 {
		t.Fatalf("%d records still in the kafka queue after the agent drained and stopped: not delivered", len(left))
	}

	// Wait for the subscriber to have every DDATA the agent had
	// acknowledged, then decode everything with node.
	checker := seqcheck.New()
	left, last, err := checker.AddBuffer(filepath.Join(dir, "buffer.db"), "mqtt")
	if err != nil {
		t.Fatal(err)
	}
	if left != 0 {
		t.Fatalf("%d records still in the mqtt queue after the agent drained and stopped: not delivered", left)
	}
	var msgs []nodeMessage
	deadline := time.Now().Add(2 * time.Minute)
	for {
		msgs = decodeWithNode(t, sub)
		host := checkSparkplugHost(t, msgs, kafkaRecs)
		probe := seqcheck.New()
		_, _, _ = probe.AddBuffer(filepath.Join(dir, "buffer.db"), "mqtt")
		for _, f := range host.data {
			_ = probe.Add(record.AppendJSON(nil, &f))
		}
		if r := probe.Verify(last); r.Missing == 0 || time.Now().After(deadline) {
			for _, f := range host.data {
				if err := checker.Add(record.AppendJSON(nil, &f)); err != nil {
					t.Fatal(err)
				}
			}
			r := checker.Verify(last)
			t.Logf("Sparkplug decoded by sparkplug-payload: %d messages, %d NBIRTH, %d DBIRTH, %d DDATA (%d historical), %d DDEATH, %d NDEATH; delivery %s (buffer drained)",
				len(msgs), host.nbirths, host.dbirths, len(host.data), host.historical, host.ddeaths, host.ndeaths, r)
			if r.Missing != 0 || r.Unexpected != 0 {
				t.Fatalf("lost samples: %s", r)
			}
			if host.nbirths < 3 || host.historical == 0 {
				t.Errorf("%d NBIRTH (want one per session and one for the rebirth: at least 3), %d historical DDATA (want some after the restart)", host.nbirths, host.historical)
			}
			// The agent's stop ends the session: a DDEATH per device, then
			// the NDEATH (Mosquitto also sends the will when it stops).
			if last := msgs[len(msgs)-1].Topic; host.ddeaths != 10 || host.ndeaths == 0 || !strings.Contains(last, "/NDEATH/") {
				t.Errorf("%d DDEATH, %d NDEATH, last message on %s; want one DDEATH per device (10) and an NDEATH last", host.ddeaths, host.ndeaths, last)
			}
			return
		}
		time.Sleep(time.Second) // the subscriber catching up
	}
}

// nodeRebirth returns an NCMD payload with Node Control/Rebirth = true,
// encoded by sparkplug-payload.
func nodeRebirth(t *testing.T) []byte {
	t.Helper()
	cmd := exec.Command("node", "-e", `const sp = require('sparkplug-payload').get('spBv1.0');
process.stdout.write(Buffer.from(sp.encodePayload({timestamp: Date.now(), metrics: [{name: 'Node Control/Rebirth', type: 'Boolean', value: true}]})).toString('base64'));`)
	cmd.Env = append(os.Environ(), "NODE_PATH="+nodeModules(t))
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("encode NCMD with node: %v", err)
	}
	b, err := base64.StdEncoding.DecodeString(string(out))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// sparkplugHost is what checkSparkplugHost saw.
type sparkplugHost struct {
	nbirths, dbirths, ddeaths, ndeaths, historical int
	data                                           []record.Fields // each DDATA metric as the Kafka record it matches
}

// checkSparkplugHost follows the decoded messages as a host application
// would and fails the test on a breach of the Sparkplug rules or a DDATA
// that differs from the Kafka record of its series and seq.
func checkSparkplugHost(t *testing.T, msgs []nodeMessage, kafkaRecs map[string]record.Fields) sparkplugHost {
	t.Helper()
	var h sparkplugHost
	type born struct{ name, typ string }
	var births map[string]map[string]born // device → alias → metric, this session
	next := -1                            // expected seq; -1 before the first NBIRTH
	for i, msg := range msgs {
		parts := strings.Split(msg.Topic, "/")
		if len(parts) < 4 || parts[0] != "spBv1.0" || parts[1] != "plant" || parts[3] != "gw-e2e" {
			t.Fatalf("message %d: topic %q", i, msg.Topic)
		}
		kind := parts[2]
		if kind == "NCMD" {
			continue
		}
		if kind == "NDEATH" {
			h.ndeaths++
			continue
		}
		if msg.Payload.Seq == nil {
			t.Fatalf("message %d (%s) without seq", i, msg.Topic)
		}
		seq, _ := strconv.Atoi(*msg.Payload.Seq)
		if kind == "NBIRTH" {
			if seq != 0 {
				t.Fatalf("message %d: NBIRTH seq %d", i, seq)
			}
			var bd bool
			for _, m := range msg.Payload.Metrics {
				bd = bd || (m.Name == "bdSeq" && m.Type == "Int64")
			}
			if !bd {
				t.Fatalf("message %d: NBIRTH without an Int64 bdSeq", i)
			}
			h.nbirths++
			births = map[string]map[string]born{}
			next = 1
			continue
		}
		if next < 0 {
			// Messages of a session whose NBIRTH the subscriber missed
			// (it subscribed after the agent connected) are not checked.
			continue
		}
		if seq != next {
			t.Fatalf("message %d (%s): seq %d, want %d", i, msg.Topic, seq, next)
		}
		next = (next + 1) % 256
		if len(parts) != 5 {
			t.Fatalf("message %d: %s without a device", i, msg.Topic)
		}
		dev := parts[4]
		switch kind {
		case "DDEATH":
			if _, ok := births[dev]; !ok {
				t.Fatalf("message %d: DDEATH of %s, not born", i, dev)
			}
			delete(births, dev)
			h.ddeaths++
		case "DBIRTH":
			b := map[string]born{}
			for _, m := range msg.Payload.Metrics {
				if m.Name == "" || m.Alias == "" || m.Type == "" {
					t.Fatalf("message %d: DBIRTH metric without name, alias or type: %+v", i, m)
				}
				b[m.Alias] = born{m.Name, m.Type}
			}
			births[dev] = b
			h.dbirths++
		case "DDATA":
			b, ok := births[dev]
			if !ok {
				t.Fatalf("message %d: DDATA of %s before its DBIRTH", i, dev)
			}
			for _, m := range msg.Payload.Metrics {
				bm, ok := b[m.Alias]
				if !ok || m.Name != "" {
					t.Fatalf("message %d: DDATA of %s: alias %q not born, or a name (%q)", i, dev, m.Alias, m.Name)
				}
				if m.Type != bm.typ {
					t.Fatalf("message %d: %s/%s is %s, born %s", i, dev, bm.name, m.Type, bm.typ)
				}
				var sseq string
				if err := json.Unmarshal(m.Properties["seq"].Value, &sseq); err != nil {
					t.Fatalf("message %d: %s/%s: seq property %s: %v", i, dev, bm.name, m.Properties["seq"].Value, err)
				}
				key := dev + "/" + bm.name + "/" + sseq
				f, ok := kafkaRecs[key]
				if !ok {
					t.Fatalf("message %d: DDATA %s has no Kafka record", i, key)
				}
				checkSparkplugValue(t, key, m, f)
				if m.IsHistorical {
					h.historical++
				}
				h.data = append(h.data, f)
			}
		default:
			t.Fatalf("message %d: unexpected %s", i, kind)
		}
	}
	return h
}

// checkSparkplugValue compares a decoded DDATA metric with the Kafka
// record of the same sample.
func checkSparkplugValue(t *testing.T, key string, m nodeMetric, f record.Fields) {
	t.Helper()
	if want := strconv.FormatInt(f.ReadTime.UnixMilli(), 10); m.Timestamp != want {
		t.Fatalf("%s: timestamp %s, read time %s", key, m.Timestamp, want)
	}
	if f.NoValue {
		if string(m.Value) != "null" {
			t.Fatalf("%s: a bad sample's metric has value %s, want null", key, m.Value)
		}
		return
	}
	var ok bool
	switch f.Type {
	case record.TypeFloat:
		var v float64
		ok = m.Type == "Double" && json.Unmarshal(m.Value, &v) == nil && v == f.Float
	case record.TypeInt:
		ok = m.Type == "Int64" && string(m.Value) == `"`+strconv.FormatInt(f.Int, 10)+`"`
	case record.TypeUint:
		ok = m.Type == "UInt64" && string(m.Value) == `"`+strconv.FormatUint(f.Uint, 10)+`"`
	case record.TypeBool:
		ok = m.Type == "Boolean" && string(m.Value) == strconv.FormatBool(f.Bool)
	case record.TypeString:
		var v string
		ok = m.Type == "String" && json.Unmarshal(m.Value, &v) == nil && v == f.String
	}
	if !ok {
		t.Fatalf("%s: Sparkplug %s %s, Kafka record %+v", key, m.Type, m.Value, f)
	}
}

// bufferedFields returns the records still in a queue of the buffer.
func bufferedFields(t *testing.T, path, queue string) []record.Fields {
	t.Helper()
	buf, err := buffer.Open(path, buffer.Options{Queues: []string{queue}, LockTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer buf.Close()
	recs, err := buf.Queue(queue).Read(buffer.Start(), 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]record.Fields, 0, len(recs))
	for _, r := range recs {
		env, err := record.DecodeEnvelope(r.Data)
		if err != nil {
			t.Fatalf("buffered record %s: %v", r.Pos, err)
		}
		f, err := record.Decode(env.Value)
		if err != nil {
			t.Fatalf("buffered record %s: %v", r.Pos, err)
		}
		out = append(out, f)
	}
	return out
}
