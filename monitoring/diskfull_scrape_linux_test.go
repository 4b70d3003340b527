package monitoring

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/iot-producer/iot-producer/internal/faultproxy/kfakeproxy"
	"github.com/iot-producer/iot-producer/internal/smallfs"
	"github.com/iot-producer/iot-producer/telemetry"
)

// TestScrapedDiskFull runs the agent with its buffer on a small
// filesystem, fills the filesystem from outside and reads /metrics and
// /ready over HTTP:
//
//   - Full while the broker is cut: the buffer drops its oldest records to
//     make room (iot_buffer_dropped_records_total{reason="disk_full"}),
//     commits fail (iot_buffer_commit_errors_total), ingest holds samples
//     in memory up to max_pending_bytes and then drops them
//     (iot_ingest_samples_dropped_total{reason="pending_full"}, what
//     IotIngestSamplesDropped reads), and /ready shows ingest degraded.
//   - Room again: commits succeed and /ready shows ingest ok
//     ("committing"): degraded clears.
//   - Full again with more samples pending than the space reserve holds,
//     and the agent stopped: its final commit fails, the loss is recorded
//     in the file, and the next start exports
//     iot_ingest_samples_dropped_total{reason="shutdown_commit_failed"}
//     beside the drops before (the counts live in the buffer file).
func TestScrapedDiskFull(t *testing.T) {
	if testing.Short() {
		t.Skip("starts agents and brokers")
	}
	names := usedNames(t)
	dir := smallfs.Mount(t)
	r := startScenarioAgentIn(t, dir, ", max_pending_bytes: 64KiB", nil)
	r.waitMetric("records sent", above("kafka_messages_sent_total", 0))
	r.cluster.Cut()
	filler := filepath.Join(dir, "filler")
	smallfs.Fill(t, filler)
	s := r.waitMetric("commits to fail and ingest to drop",
		above("iot_buffer_commit_errors_total", 0),
		above("iot_ingest_samples_dropped_total", 0, "reason", "pending_full"),
		above("iot_buffer_dropped_records_total", 0, "queue", "kafka", "reason", "disk_full"),
		allExported(names))
	c := r.waitReady("ingest", telemetry.StateDegraded, "buffer commits failing")
	t.Logf("/ready ingest: %s %q; %v", c.State, c.Detail, s["iot_ingest_samples_dropped_total"])
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	r.cluster.Restore()
	c = r.waitReady("ingest", telemetry.StateOK, "committing")
	t.Logf("/ready ingest after: %s %q", c.State, c.Detail)

	// Full again with room for more samples pending than the space
	// reserve (1 MiB) holds, and stopped: the final commit fails, its loss
	// is recorded in the file with the reserve, and the next start
	// exports it with the drops before.
	if err := r.stop(); err != nil {
		t.Fatalf("agent: %v", err)
	}
	r = startScenarioAgentIn(t, dir, "", func(c *kfakeproxy.Cluster) { c.Cut() })
	smallfs.Fill(t, filler)
	r.waitMetric("samples pending beyond the reserve", above("iot_ingest_pending_samples", 30000))
	err := r.stop()
	t.Logf("stopped on a full disk: %v", err)
	if err == nil {
		t.Error("the agent stopped on a full disk with 30000 samples pending and its final commit succeeded")
	}
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	r = startScenarioAgentIn(t, dir, "", nil)
	r.waitMetric("the drops before the last stop",
		above("iot_ingest_samples_dropped_total", 0, "reason", "pending_full"),
		above("iot_ingest_samples_dropped_total", 0, "reason", "shutdown_commit_failed"),
		above("iot_buffer_dropped_records_total", 0, "queue", "kafka", "reason", "disk_full"))
}
