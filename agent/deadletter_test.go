package agent_test

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/iot-producer/iot-producer/agent"

	"github.com/iot-producer/iot-producer/agent/config"
	"github.com/iot-producer/iot-producer/buffer"
	"github.com/iot-producer/iot-producer/internal/kfakefault"
	"github.com/iot-producer/iot-producer/internal/seqcheck"
	"github.com/iot-producer/iot-producer/record"
	"github.com/iot-producer/iot-producer/telemetry"
)

// TestRefusedRecordsAreDeadLettered: the broker refuses for good
// (MESSAGE_TOO_LARGE) every produce request carrying the first record it
// was sent. That record alone must land in the kafka.dead queue with its
// reason, be counted, and not hold back the rest (the records refused with
// it in one request are sent again); the topic and the dead letters
// together hold every sequence number.
func TestRefusedRecordsAreDeadLettered(t *testing.T) {
	checkLeaks(t)
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, topic))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cluster.Close)
	kfakefault.RefuseRecord(cluster, kerr.MessageTooLarge)
	dir := t.TempDir()
	cfg, err := config.Parse([]byte(fmt.Sprintf(`
gateway: {id: gw-dl, state_dir: %q}
device: {count: 5, tags_per_device: 4, sample_interval: 10ms}
producer: {brokers: [%q], topic: %s, batch_size: 100, worker_count: 1}
telemetry: {metrics_listen: "127.0.0.1:0", health_listen: "127.0.0.1:0", pprof_listen: "off"}
`, dir, cluster.ListenAddrs()[0], topic)), "dead-letter test")
	if err != nil {
		t.Fatal(err)
	}
	a, stop := startAgent(t, cfg)
	snap := func() telemetry.MetricsSnapshot { return telemetry.Snapshot(a.Metrics()) }
	waitFor(t, "dead letters and then deliveries", func() bool {
		s := snap()
		return s.Sum("iot_dead_letter_records_total") > 0 && s.Sum("kafka_messages_sent_total") >= 500
	})
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	deadCount := snap().Sum("iot_dead_letter_records_total")

	buf, err := buffer.Open(filepath.Join(dir, "buffer.db"), buffer.Options{Queues: []string{"kafka"}, DeadLetterQueues: []string{"kafka.dead"}})
	if err != nil {
		t.Fatal(err)
	}
	dead, err := buf.Queue("kafka.dead").Read(buffer.Start(), 1<<20)
	buf.Close()
	if err != nil {
		t.Fatal(err)
	}
	if len(dead) != 1 || float64(len(dead)) != deadCount {
		t.Fatalf("%d dead letters in the queue, the metric counts %.0f; want the one refused record", len(dead), deadCount)
	}
	checker := seqcheck.New()
	for _, r := range dead {
		dl, err := record.DecodeDeadLetter(r.Data)
		if err != nil {
			t.Fatal(err)
		}
		if dl.Reason != "MESSAGE_TOO_LARGE" {
			t.Fatalf("reason %q", dl.Reason)
		}
		env, err := record.DecodeEnvelope(dl.Envelope)
		if err != nil {
			t.Fatal(err)
		}
		if err := checker.Add(env.Value); err != nil {
			t.Fatal(err)
		}
	}
	addBuffered(t, dir, checker)
	rctx, rcancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer rcancel()
	if err := checker.ReadTopic(rctx, cluster.ListenAddrs(), topic); err != nil {
		t.Fatal(err)
	}
	if r := checker.Verify(lastSeqs(t, dir)); r.Missing != 0 || r.Unexpected != 0 {
		t.Fatalf("topic plus dead letters: %s", r)
	}
}

// TestAuthorisationRefusalIsShownAndRetried: the broker refuses the
// gateway (TOPIC_AUTHORIZATION_FAILED) for a while, as after an ACL
// mistake. Nothing may be dead-lettered; /ready and iot_uplink_state must
// say refused while it lasts, and once the ACL is fixed every sequence
// number is in the topic.
func TestAuthorisationRefusalIsShownAndRetried(t *testing.T) {
	checkLeaks(t)
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, topic))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cluster.Close)
	var fixed atomic.Bool
	cluster.ControlKey(int16(kmsg.Produce), func(req kmsg.Request) (kmsg.Response, error, bool) {
		if fixed.Load() {
			return nil, nil, false
		}
		cluster.KeepControl()
		return kfakefault.Refusal(req.(*kmsg.ProduceRequest), kerr.TopicAuthorizationFailed), nil, true
	})
	dir := t.TempDir()
	cfg, err := config.Parse([]byte(fmt.Sprintf(`
gateway: {id: gw-acl, state_dir: %q}
device: {count: 5, tags_per_device: 4, sample_interval: 10ms}
producer: {brokers: [%q], topic: %s, batch_size: 100, worker_count: 1}
telemetry: {metrics_listen: "127.0.0.1:0", health_listen: "127.0.0.1:0", pprof_listen: "off"}
`, dir, cluster.ListenAddrs()[0], topic)), "refusal test")
	if err != nil {
		t.Fatal(err)
	}
	a, stop := startAgent(t, cfg)
	waitFor(t, "the refusal in /ready", func() bool {
		for _, c := range a.Health().Snapshot() {
			if c.Name == "sink/kafka" && c.State == telemetry.StateDegraded && strings.Contains(c.Detail, "REFUSED") {
				return true
			}
		}
		return false
	})
	if v := telemetry.Snapshot(a.Metrics()).Sum("iot_dead_letter_records_total"); v != 0 {
		t.Fatalf("%.0f records dead-lettered for an authorisation error", v)
	}
	if got := uplinkState(t, a); got != telemetry.UplinkRefused {
		t.Fatalf("iot_uplink_state says %q, want refused", got)
	}
	fixed.Store(true)
	waitFor(t, "sending again", func() bool { return uplinkState(t, a) == telemetry.UplinkConnected })
	waitFor(t, "the backlog sent", func() bool { return a.Buffer().Queue("kafka").Stats().Records < 100 })
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	checker := seqcheck.New()
	left := addBuffered(t, dir, checker)
	rctx, rcancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer rcancel()
	if err := checker.ReadTopic(rctx, cluster.ListenAddrs(), topic); err != nil {
		t.Fatal(err)
	}
	r := checker.Verify(lastSeqs(t, dir))
	t.Logf("%s (%d still buffered)", r, left)
	if r.Missing != 0 || r.Unexpected != 0 {
		t.Fatalf("lost records: %s", r)
	}
}

// uplinkState is the state iot_uplink_state{sink="kafka"} is 1 for.
func uplinkState(t *testing.T, a *agent.Agent) string {
	t.Helper()
	f, ok := telemetry.Snapshot(a.Metrics())["iot_uplink_state"]
	if !ok {
		t.Fatal("iot_uplink_state not exported")
	}
	for _, m := range f.GetMetric() {
		if m.GetGauge().GetValue() != 1 {
			continue
		}
		for _, l := range m.GetLabel() {
			if l.GetName() == telemetry.LabelState {
				return l.GetValue()
			}
		}
	}
	return ""
}
