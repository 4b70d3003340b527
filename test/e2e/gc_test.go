//go:build e2e

package e2e

import (
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestCollectorTargetFollowsTheLoad runs the agent binary and reads the
// garbage collector's target, which the runtime reports as
// go_gc_gogc_percent: 50 while the agent starts, 25 at a light load (two
// simulated devices), 50 again once a reload makes it 100,000 samples a
// second, each change in the log. With GOGC in the environment the pacer
// stays off and the target is GOGC's.
func TestCollectorTargetFollowsTheLoad(t *testing.T) {
	brokers := kafkaBrokers(t)
	topic := fmt.Sprintf("e2e-gc-%d", time.Now().UnixNano())
	config := func(dir, device string) string {
		return writeConfig(t, dir, fmt.Sprintf(`
gateway: {id: gw-e2e-gc, state_dir: %q}
device: %s
producer: {brokers: [%s], topic: %s}
telemetry: {metrics_listen: "127.0.0.1:0", health_listen: "127.0.0.1:0", pprof_listen: "off"}
log: {level: debug}
`, dir, device, strings.Join(brokers, ", "), topic))
	}
	const (
		light = "{count: 2, tags_per_device: 5, sample_interval: 1s}"
		heavy = "{count: 100, tags_per_device: 100, sample_interval: 100ms}"
	)
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
		a := startAgent(t, config(dir, light))
		if v := gogc(t, a); v != 50 && v != 25 {
			t.Fatalf("go_gc_gogc_percent %v at start, want 50 (or 25 once lowered)", v)
		}
		a.waitLog(t, `msg="garbage collector target set" gogc=25 was=50`, time.Minute)
		if v := gogc(t, a); v != 25 {
			t.Fatalf("go_gc_gogc_percent %v after the pacer set 25", v)
		}
		config(dir, heavy)
		a.waitLog(t, `msg="garbage collector target set" gogc=50 was=`, time.Minute)
		if v := gogc(t, a); v != 50 {
			t.Fatalf("go_gc_gogc_percent %v after the pacer set 50", v)
		}
		if code := a.stop(t, syscall.SIGTERM, 30*time.Second); code != 0 {
			t.Fatalf("exit code %d after SIGTERM:\n%s", code, a.log())
		}
	})

	t.Run("GOGC set", func(t *testing.T) {
		dir := t.TempDir()
		a := startAgentEnv(t, config(dir, heavy), "GOGC=100")
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
