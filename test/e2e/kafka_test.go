//go:build e2e

package e2e

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/iot-producer/iot-producer/internal/faultproxy"
)

// TestOutageLosesNothing runs the agent at 10,000 samples/s against a real
// broker and takes the broker away for E2E_OUTAGE (60s): the link cut
// (connections reset), the link stalled (blackholed), or the broker process
// stopped and started again. The agent must report the outage in /ready,
// drain the backlog once the broker is back, and every committed sequence
// number must be in the topic.
func TestOutageLosesNothing(t *testing.T) {
	cases := []struct {
		name string
		port int
		down func(t *testing.T, c *cluster, p *faultproxy.Proxy)
		up   func(t *testing.T, c *cluster, p *faultproxy.Proxy)
	}{
		{
			name: "link cut", port: 22092,
			down: func(_ *testing.T, _ *cluster, p *faultproxy.Proxy) { p.Cut() },
			up:   func(_ *testing.T, _ *cluster, p *faultproxy.Proxy) { p.Restore() },
		},
		{
			name: "link stalled", port: 22192,
			down: func(_ *testing.T, _ *cluster, p *faultproxy.Proxy) { p.Stall() },
			up:   func(_ *testing.T, _ *cluster, p *faultproxy.Proxy) { p.Restore() },
		},
		{
			name: "broker restarted", port: 22292,
			down: func(t *testing.T, c *cluster, _ *faultproxy.Proxy) { c.script(t, "stop-node", "1", "--dir", c.dir) },
			up:   func(t *testing.T, c *cluster, _ *faultproxy.Proxy) { c.script(t, "start-node", "1", "--dir", c.dir) },
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			advertised := tc.port + 500
			c := startCluster(t, "--port", fmt.Sprint(tc.port), "--advertise-port", fmt.Sprint(advertised))
			proxy, err := faultproxy.Listen(fmt.Sprintf("127.0.0.1:%d", advertised), fmt.Sprintf("127.0.0.1:%d", tc.port))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { proxy.Close() })

			topic := fmt.Sprintf("e2e-outage-%d", time.Now().UnixNano())
			dir := t.TempDir()
			a := startAgent(t, rateConfig(t, dir, c.brokers(), topic, ""))
			a.waitAcked(t, 20000, time.Minute)

			tc.down(t, c, proxy)
			down := time.Now()
			a.waitReady(t, func(detail string) bool { return strings.Contains(detail, "backing off") }, outage(t)+30*time.Second)
			time.Sleep(time.Until(down.Add(outage(t)))) // the rest of the outage
			backlog := a.gauge(t, "kafka_producer_buffer_depth")
			tc.up(t, c, proxy)
			drain := a.waitDrained(t, 5*time.Minute)
			t.Logf("%s for %s: %.0f records buffered, drained in %s", tc.name, outage(t), backlog, drain.Round(100*time.Millisecond))
			a.waitReady(t, func(detail string) bool { return detail == "sending" }, time.Minute)
			a.stopDrained(t, 5*time.Minute)
			verifyDelivery(t, c.brokers(), topic, dir)
		})
	}
}

// TestCrashesLoseNothing kills the agent with SIGKILL mid-stream 20 times
// at random moments and restarts it on the same buffer: sequence numbers
// continue across the crashes, so any gap would be a loss.
func TestCrashesLoseNothing(t *testing.T) {
	c := startCluster(t, "--port", "22392")
	topic := fmt.Sprintf("e2e-crash-%d", time.Now().UnixNano())
	dir := t.TempDir()
	cfg := rateConfig(t, dir, c.brokers(), topic, "")
	for i := range 20 {
		a := startAgent(t, cfg)
		a.waitAcked(t, 1, time.Minute)
		time.Sleep(time.Duration(100+rand.IntN(1400)) * time.Millisecond) // a random moment mid-stream
		if code := a.stop(t, syscall.SIGKILL, 10*time.Second); code != -1 {
			t.Fatalf("crash %d: exit code %d, want killed", i+1, code)
		}
	}
	a := startAgent(t, cfg)
	a.waitAcked(t, 20000, time.Minute)
	a.stopDrained(t, 5*time.Minute)
	r := verifyDelivery(t, c.brokers(), topic, dir)
	t.Logf("20 SIGKILLs: %d sequence numbers committed, 0 lost, %d duplicates", r.Expected, r.Duplicates)
}

// TestLeaderChangesLoseNothing produces to a three-broker cluster (topic
// replicated three times, min.insync.replicas 2) while one broker is
// stopped cleanly and restarted, then another is killed and restarted:
// partition leaders move twice.
func TestLeaderChangesLoseNothing(t *testing.T) {
	c := startCluster(t, "--brokers", "3", "--port", "25092")
	topic := fmt.Sprintf("e2e-leaders-%d", time.Now().UnixNano())
	c.script(t, "topics", "--dir", c.dir, "--create", "--topic", topic, "--partitions", "3", "--replication-factor", "3")
	dir := t.TempDir()
	a := startAgent(t, rateConfig(t, dir, c.brokers(), topic, ""))
	a.waitAcked(t, 20000, time.Minute)
	c.script(t, "stop-node", "1", "--dir", c.dir)
	a.waitAcked(t, a.gauge(t, "kafka_messages_sent_total")+20000, time.Minute)
	c.script(t, "start-node", "1", "--dir", c.dir)
	c.script(t, "stop-node", "2", "--dir", c.dir, "--kill")
	a.waitAcked(t, a.gauge(t, "kafka_messages_sent_total")+20000, 2*time.Minute)
	c.script(t, "start-node", "2", "--dir", c.dir)
	a.waitAcked(t, a.gauge(t, "kafka_messages_sent_total")+20000, time.Minute)
	a.stopDrained(t, 5*time.Minute)
	verifyDelivery(t, c.brokers(), topic, dir)
}

// TestTLSAndSCRAM sends over TLS with a client certificate and
// SCRAM-SHA-512 (password from a file) to a broker that accepts nothing
// else, and checks that a wrong password
// is refused with an error that says so, in the log and in /ready.
func TestTLSAndSCRAM(t *testing.T) {
	c := startCluster(t, "--port", "27192", "--security", "tls-scram")
	for _, k := range []string{"KAFKA_CA_FILE", "KAFKA_CLIENT_CERT", "KAFKA_CLIENT_KEY", "KAFKA_SCRAM_USER", "KAFKA_SCRAM_PASSWORD", "KAFKA_INTERNAL_BROKERS"} {
		if c.env[k] == "" {
			t.Fatalf("kafka.sh printed no %s", k)
		}
	}
	secure := func(dir, password string) string {
		pw := filepath.Join(dir, "kafka-password")
		if err := os.WriteFile(pw, []byte(password+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		return fmt.Sprintf(`  tls: {enabled: true, ca_file: %q, cert_file: %q, key_file: %q, server_name: localhost}
  sasl: {mechanism: SCRAM-SHA-512, username: %q, password_file: %q}`,
			c.env["KAFKA_CA_FILE"], c.env["KAFKA_CLIENT_CERT"], c.env["KAFKA_CLIENT_KEY"], c.env["KAFKA_SCRAM_USER"], pw)
	}

	topic := fmt.Sprintf("e2e-tls-%d", time.Now().UnixNano())
	dir := t.TempDir()
	a := startAgent(t, rateConfig(t, dir, c.brokers(), topic, secure(dir, c.env["KAFKA_SCRAM_PASSWORD"])))
	a.waitAcked(t, 20000, time.Minute)
	a.stopDrained(t, 5*time.Minute)
	// Read back over the broker's internal plaintext listener.
	verifyDelivery(t, strings.Split(c.env["KAFKA_INTERNAL_BROKERS"], ","), topic, dir)

	bad := t.TempDir()
	b := startAgent(t, rateConfig(t, bad, c.brokers(), topic+"-refused", secure(bad, "not-the-password")))
	b.waitLog(t, "SASL_AUTHENTICATION_FAILED", time.Minute)
	b.waitReady(t, func(detail string) bool { return strings.Contains(detail, "SASL_AUTHENTICATION_FAILED") }, time.Minute)
	if got := b.gauge(t, "kafka_messages_sent_total"); got != 0 {
		t.Fatalf("%.0f records acknowledged with a wrong password", got)
	}
	if code := b.stop(t, syscall.SIGTERM, 30*time.Second); code != 0 {
		t.Fatalf("exit %d:\n%s", code, b.tail(40))
	}
}

// waitReady polls /ready until the sink/kafka component's detail satisfies
// ok.
func (a *agentProc) waitReady(t *testing.T, ok func(detail string) bool, limit time.Duration) {
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
			if c.Name == "sink/kafka" {
				last = c.State + ": " + c.Detail
				if ok(c.Detail) {
					return
				}
			}
		}
		time.Sleep(200 * time.Millisecond) // poll interval
	}
	t.Fatalf("/ready never showed the expected sink/kafka state; last %q\n%s", last, a.tail(30))
}
