//go:build e2e

package e2e

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/iot-producer/iot-producer/internal/faultproxy"
	"github.com/iot-producer/iot-producer/internal/seqcheck"
)

// The order tests use ports 21000-21999.

// orderConfig is an agent at 10,000 samples/s (100 devices × 10 tags
// every 100ms) sending to Kafka with a 2s delivery timeout; with quiet set
// the devices are sampled once an hour instead (the drain at the end: a
// configuration needs a source).
func orderConfig(t *testing.T, dir string, brokers []string, topic string, quiet bool) string {
	t.Helper()
	interval := "100ms"
	if quiet {
		interval = "1h"
	}
	t.Helper()
	return writeConfig(t, dir, fmt.Sprintf(`
gateway: {id: gw-e2e, state_dir: %q}
device: {count: 100, tags_per_device: 10, sample_interval: %s, seed: 11}
producer:
  brokers: [%s]
  topic: %s
  delivery_timeout: 2s
telemetry: {metrics_listen: "127.0.0.1:0", health_listen: "127.0.0.1:0", pprof_listen: "off"}
`, dir, interval, strings.Join(brokers, ", "), topic))
}

// TestOrderKeptAcrossFaults runs the agent against a real Kafka broker
// behind a fault proxy and, as it sends, cuts the link (8s: long enough for
// the live lane to leave a backlog to the backlog lane), stalls it past
// the delivery timeout, restarts the broker, and flaps the link five
// times. Then sampling all but stops (a reload: once an hour) and the
// agent must drain its buffer to zero: records left behind fail the test.
//
// Read back partition by partition in offset order, with each record's
// iot-lane header, the rule is seqcheck.Order's: per series and lane, a
// record not seen before must carry a sequence number above every one
// seen before in that lane; a record already seen (in any lane) is a
// re-send, allowed and counted. Every committed sequence number must be
// in the topic.
func TestOrderKeptAcrossFaults(t *testing.T) {
	const port, advertised = 21492, 21592 // kafka.sh also takes 22492 (controller) and 23492 (internal)
	c := startCluster(t, "--port", strconv.Itoa(port), "--advertise-port", strconv.Itoa(advertised))
	proxy, err := faultproxy.Listen(fmt.Sprintf("127.0.0.1:%d", advertised), fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { proxy.Close() })

	topic := fmt.Sprintf("e2e-order-%d", time.Now().UnixNano())
	dir := t.TempDir()
	cfg := orderConfig(t, dir, c.brokers(), topic, false)
	a := startAgent(t, cfg)
	a.waitAcked(t, 20000, time.Minute)
	more := func(n float64, limit time.Duration) {
		t.Helper()
		a.waitAcked(t, a.gauge(t, "kafka_messages_sent_total")+n, limit)
	}
	// hold keeps a fault on for d: the fault's length, not a wait for
	// something to happen.
	hold := func(d time.Duration) { time.Sleep(d) }

	proxy.Cut()
	hold(8 * time.Second)
	proxy.Restore()
	more(20000, 2*time.Minute)

	proxy.Stall()
	hold(8 * time.Second)
	proxy.Restore()
	more(20000, 2*time.Minute)

	c.script(t, "stop-node", "1", "--dir", c.dir)
	hold(8 * time.Second)
	c.script(t, "start-node", "1", "--dir", c.dir)
	more(20000, 2*time.Minute)

	for range 5 {
		proxy.Cut()
		hold(300 * time.Millisecond)
		proxy.Restore()
		more(5000, 2*time.Minute)
	}
	if n := strings.Count(a.log(), "live lane behind"); n == 0 {
		t.Fatalf("the live lane never left a backlog: the backlog lane was not tested\n%s", a.tail(40))
	}

	// Sample once an hour from now on, and let the agent send everything
	// it holds.
	orderConfig(t, dir, c.brokers(), topic, true)
	if err := a.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	a.waitLog(t, "config reloaded", time.Minute)
	a.refreshAddrs(t)
	drainStart := time.Now()
	for d := a.gauge(t, "kafka_producer_buffer_depth"); d != 0; d = a.gauge(t, "kafka_producer_buffer_depth") {
		if time.Since(drainStart) > 5*time.Minute {
			t.Fatalf("%.0f records still queued 5 minutes after sampling stopped:\n%s", d, a.tail(40))
		}
		time.Sleep(200 * time.Millisecond) // scrape interval
	}
	if code := a.stop(t, syscall.SIGTERM, 30*time.Second); code != 0 {
		t.Fatalf("exit %d:\n%s", code, a.tail(40))
	}

	checker, order := seqcheck.New(), seqcheck.NewOrder()
	left, last, err := seqcheck.New().AddBuffer(filepath.Join(dir, "buffer.db"), "kafka")
	if err != nil {
		t.Fatal(err)
	}
	if left != 0 {
		t.Fatalf("%d records left in the buffer after the drain: a drained buffer is part of the proof", left)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if err := checker.ReadTopicOrder(ctx, c.brokers(), topic, order); err != nil {
		t.Fatal(err)
	}
	report := checker.Verify(last)
	t.Logf("order: %s; delivery: %s", order, report)
	if order.Violations() != 0 {
		t.Errorf("order lost: %s", order)
	}
	if report.Missing != 0 || report.Unexpected != 0 {
		t.Errorf("lost records: %s", report)
	}
}

// mosquittoAuth is a Mosquitto of the test's own that requires a user
// name and password from its password file (reloaded on SIGHUP).
type mosquittoAuth struct {
	port   int
	dir    string
	pwFile string
	cmd    *exec.Cmd
}

func startMosquittoAuth(t *testing.T, port int, user, password string) *mosquittoAuth {
	t.Helper()
	const bin = "/usr/sbin/mosquitto" // Debian's, installed by scripts/ci-deps.sh
	m := &mosquittoAuth{port: port, dir: t.TempDir()}
	m.pwFile = filepath.Join(m.dir, "passwd")
	m.setPassword(t, user, password)
	conf := filepath.Join(m.dir, "mosquitto.conf")
	text := fmt.Sprintf("user root\nlistener %d 127.0.0.1\nallow_anonymous false\npassword_file %s\npersistence false\nmax_queued_messages 0\nlog_dest stderr\n", port, m.pwFile)
	if err := os.WriteFile(conf, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	logf, err := os.Create(filepath.Join(m.dir, "mosquitto.log"))
	if err != nil {
		t.Fatal(err)
	}
	m.cmd = exec.Command(bin, "-c", conf)
	m.cmd.Stdout, m.cmd.Stderr = logf, logf
	if err := m.cmd.Start(); err != nil {
		t.Fatalf("start mosquitto: %v", err)
	}
	t.Cleanup(func() {
		_ = m.cmd.Process.Kill()
		_ = m.cmd.Wait()
		logf.Close()
	})
	deadline := time.Now().Add(20 * time.Second)
	for {
		conn, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), time.Second)
		if err == nil {
			conn.Close()
			return m
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(logf.Name())
			t.Fatalf("mosquitto did not listen on %d: %v\n%s", port, err, log)
		}
		time.Sleep(50 * time.Millisecond) // the broker starting
	}
}

// setPassword writes the password file with one user; a running broker
// reads it again on SIGHUP.
func (m *mosquittoAuth) setPassword(t *testing.T, user, password string) {
	t.Helper()
	if out, err := exec.Command("mosquitto_passwd", "-c", "-b", m.pwFile, user, password).CombinedOutput(); err != nil {
		t.Fatalf("mosquitto_passwd: %v: %s", err, out)
	}
	if m.cmd != nil {
		if err := m.cmd.Process.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
	}
}

func (m *mosquittoAuth) url() string { return fmt.Sprintf("tcp://127.0.0.1:%d", m.port) }

// uplinkState returns iot_uplink_state{sink,state} from /metrics.
func (a *agentProc) uplinkState(t *testing.T, sink, state string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + a.metrics + "/metrics")
	if err != nil {
		t.Fatalf("scrape: %v", err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "iot_uplink_state{") && strings.Contains(line, `sink="`+sink+`"`) && strings.Contains(line, `state="`+state+`"`) {
			v, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
			if err != nil {
				t.Fatalf("parse %q: %v", line, err)
			}
			return v
		}
	}
	t.Fatalf("/metrics has no iot_uplink_state{sink=%q,state=%q}", sink, state)
	return 0
}

// TestMQTTRefusedThenAccepted: the broker refuses the gateway's password
// (Mosquitto 2 answers CONNACK 5, not authorised).
// The refusal must show from the outside — iot_uplink_state{state="refused"},
// /ready, an ERROR line naming it — with nothing dead-lettered; once the
// broker's password file gives the gateway's password, the records go
// out, the state returns to connected and the buffer drains.
func TestMQTTRefusedThenAccepted(t *testing.T) {
	m := startMosquittoAuth(t, 21883, "gateway", "not-what-the-gateway-has")
	dir := t.TempDir()
	pw := filepath.Join(dir, "mqtt-password")
	if err := os.WriteFile(pw, []byte("gateway-secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	a := startAgent(t, mqttRateConfig(t, dir, m.url(), fmt.Sprintf("  username: gateway\n  password_file: %s", pw)))
	a.waitLog(t, "the MQTT broker refuses the gateway", time.Minute)
	deadline := time.Now().Add(time.Minute)
	for a.uplinkState(t, "mqtt", "refused") != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("iot_uplink_state{sink=mqtt,state=refused} never 1:\n%s", a.tail(30))
		}
		time.Sleep(200 * time.Millisecond) // scrape interval
	}
	a.waitSinkReady(t, "mqtt", func(d string) bool {
		return strings.Contains(d, "REFUSED") && strings.Contains(d, "not Authorized")
	}, time.Minute)
	if got := a.sinkMetric(t, "kafka_messages_sent_total", "mqtt"); got != 0 {
		t.Fatalf("%.0f records acknowledged by a broker that refuses the gateway", got)
	}

	m.setPassword(t, "gateway", "gateway-secret")
	fixed := time.Now()
	a.waitSinkAcked(t, "mqtt", 1, 2*time.Minute)
	t.Logf("first record acknowledged %s after the broker took the password", time.Since(fixed).Round(100*time.Millisecond))
	a.waitSinkReady(t, "mqtt", func(d string) bool { return d == "sending" }, 2*time.Minute)
	if v := a.uplinkState(t, "mqtt", "connected"); v != 1 {
		t.Fatalf("iot_uplink_state{sink=mqtt,state=connected} = %v after the fix", v)
	}
	a.waitSinkDrained(t, "mqtt", 2*time.Minute)
	if n, err := a.counter("iot_dead_letter_records_total"); err != nil || n != 0 {
		t.Fatalf("dead letters: %v (%v); a refusal must never be dead-lettered", n, err)
	}
	if code := a.stop(t, syscall.SIGTERM, 30*time.Second); code != 0 {
		t.Fatalf("exit %d:\n%s", code, a.tail(40))
	}
}

// TestMQTTRestoredLinkUsedAtOnce cuts the link to Mosquitto for 20s, long
// enough for the sink's reconnect wait to reach its 10s cap and the loop's
// backoff to grow, then restores it. The loop's probe must find the broker
// again ("broker answers again; retrying now" in the log) and the sink
// send again; the time to the first acknowledgement is logged.
func TestMQTTRestoredLinkUsedAtOnce(t *testing.T) {
	m := startMosquitto(t, 21884)
	proxy, err := faultproxy.New(fmt.Sprintf("127.0.0.1:%d", m.port))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { proxy.Close() })
	dir := t.TempDir()
	a := startAgent(t, mqttRateConfig(t, dir, "tcp://"+proxy.Addr(), ""))
	a.waitSinkAcked(t, "mqtt", 10000, time.Minute)
	proxy.Cut()
	a.waitSinkReady(t, "mqtt", func(d string) bool { return strings.Contains(d, "backing off") }, time.Minute)
	time.Sleep(20 * time.Second) // the cut's length
	before := a.sinkMetric(t, "kafka_messages_sent_total", "mqtt")
	proxy.Restore()
	restored := time.Now()
	a.waitSinkAcked(t, "mqtt", before+1, 2*time.Minute)
	t.Logf("first record acknowledged %s after the link came back", time.Since(restored).Round(100*time.Millisecond))
	a.waitLog(t, "broker answers again; retrying now", time.Minute)
	a.waitSinkReady(t, "mqtt", func(d string) bool { return d == "sending" }, 2*time.Minute)
	if code := a.stop(t, syscall.SIGTERM, 30*time.Second); code != 0 {
		t.Fatalf("exit %d:\n%s", code, a.tail(40))
	}
}
