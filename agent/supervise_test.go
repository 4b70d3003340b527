package agent_test

import (
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/iot-producer/iot-producer/agent/config"
	"github.com/iot-producer/iot-producer/telemetry"
)

// TestStuckSinkIsSeen: the broker takes produce requests and never
// answers, so the send loop has work and makes no progress (nothing
// acknowledged, nothing failed yet). Stalled — which the watchdog pings
// only while it is empty — must name the sink; once the broker answers
// again it must be empty again.
func TestStuckSinkIsSeen(t *testing.T) {
	checkLeaks(t)
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, topic))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cluster.Close)
	var swallow atomic.Bool
	cluster.ControlKey(int16(kmsg.Produce), func(kmsg.Request) (kmsg.Response, error, bool) {
		cluster.KeepControl()
		if swallow.Load() {
			return nil, nil, true // taken, never answered
		}
		return nil, nil, false
	})
	cfg, err := config.Parse([]byte(fmt.Sprintf(`
gateway: {id: gw-stuck, state_dir: %q}
device: {count: 2, tags_per_device: 2, sample_interval: 10ms}
producer: {brokers: [%q], topic: %s, delivery_timeout: 10m}
telemetry: {metrics_listen: "127.0.0.1:0", health_listen: "127.0.0.1:0", pprof_listen: "off"}
`, t.TempDir(), cluster.ListenAddrs()[0], topic)), "stuck test")
	if err != nil {
		t.Fatal(err)
	}
	a, stop := startAgent(t, cfg)
	const window = 300 * time.Millisecond
	waitFor(t, "records sent and nothing stalled", func() bool {
		return telemetry.Snapshot(a.Metrics()).Sum("kafka_messages_sent_total") > 0 && len(a.Stalled(window)) == 0
	})
	swallow.Store(true)
	waitFor(t, "the stuck send loop to be seen", func() bool {
		s := a.Stalled(window)
		return len(s) == 1 && strings.HasPrefix(s[0], "sink/kafka made no progress")
	})
	t.Logf("stalled: %v", a.Stalled(window))
	swallow.Store(false)
	if err := stop(); err != nil {
		t.Log(err) // the swallowed batches may outlive the shutdown grace
	}
}
