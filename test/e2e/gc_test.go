//go:build e2e

package e2e

import (
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestCollectorTargetFollowsTheLoad runs the agent binary at 100,000
// samples a second: the garbage collector's target, which the runtime
// reports as go_gc_gogc_percent, starts at 25 and the pacer raises it to
// 50 (its log says so). With GOGC in the environment the pacer stays off
// and the target is GOGC's.
func TestCollectorTargetFollowsTheLoad(t *testing.T) {
	brokers := kafkaBrokers(t)
	config := func(dir string) string {
		return writeConfig(t, dir, fmt.Sprintf(`
gateway: {id: gw-e2e-gc, state_dir: %q}
device: {count: 100, tags_per_device: 100, sample_interval: 100ms}
producer: {brokers: [%s], topic: e2e-gc-%d}
telemetry: {metrics_listen: "127.0.0.1:0", health_listen: "127.0.0.1:0", pprof_listen: "off"}
log: {level: debug}
`, dir, strings.Join(brokers, ", "), time.Now().UnixNano()))
	}
	gogc := func(t *testing.T, a *agentProc) float64 {
		t.Helper()
		v, err := a.counter("go_gc_gogc_percent")
		if err != nil {
			t.Fatal(err)
		}
		return v
	}

	t.Run("paced", func(t *testing.T) {
		dir := t.TempDir()
		a := startAgent(t, config(dir))
		if v := gogc(t, a); v != 25 && v != 50 {
			t.Fatalf("go_gc_gogc_percent %v at start, want 25 (or 50 if already raised)", v)
		}
		a.waitLog(t, "msg=\"garbage collector target set\" gogc=50 was=", time.Minute)
		if v := gogc(t, a); v != 50 {
			t.Fatalf("go_gc_gogc_percent %v after the pacer set 50", v)
		}
		if code := a.stop(t, syscall.SIGTERM, 30*time.Second); code != 0 {
			t.Fatalf("exit code %d after SIGTERM:\n%s", code, a.log())
		}
	})

	t.Run("GOGC set", func(t *testing.T) {
		dir := t.TempDir()
		a := startAgentEnv(t, config(dir), "GOGC=100")
		a.waitAcked(t, 50000, time.Minute)
		if v := gogc(t, a); v != 100 {
			t.Fatalf("go_gc_gogc_percent %v with GOGC=100", v)
		}
		if code := a.stop(t, syscall.SIGTERM, 30*time.Second); code != 0 {
			t.Fatalf("exit code %d after SIGTERM:\n%s", code, a.log())
		}
		if strings.Contains(a.log(), "garbage collector target set") {
			t.Fatalf("the pacer ran with GOGC set:\n%s", a.log())
		}
	})
}
