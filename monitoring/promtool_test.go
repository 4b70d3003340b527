package monitoring

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// promtool returns Prometheus' promtool from $PROMTOOL, the PATH, or the
// cache directory monitoring/promtool.sh (run by scripts/ci-deps.sh) unpacks
// it into. Without one the test fails: the rules are part of the product
// and are not left unchecked.
func promtool(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("PROMTOOL"); p != "" {
		return p
	}
	if p, err := exec.LookPath("promtool"); err == nil {
		return p
	}
	cache := os.Getenv("XDG_CACHE_HOME")
	if cache == "" {
		home, _ := os.UserHomeDir()
		cache = filepath.Join(home, ".cache")
	}
	p := filepath.Join(cache, "iot-producer", "prometheus-deb", "usr", "bin", "promtool")
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("promtool not found (PROMTOOL, PATH, %s): run scripts/ci-deps.sh or monitoring/promtool.sh --fetch", p)
	}
	return p
}

func runPromtool(t *testing.T, args ...string) {
	t.Helper()
	out, err := exec.Command(promtool(t), args...).CombinedOutput()
	if err != nil {
		t.Fatalf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// TestPromtoolRules has Prometheus parse the rules and run their unit tests.
func TestPromtoolRules(t *testing.T) {
	runPromtool(t, "check", "rules", "prometheus-rules.yaml")
	runPromtool(t, "test", "rules", "prometheus-rules.test.yaml")
}

// TestPromtoolDashboardQueries has Prometheus parse every query of the
// dashboard, written as recording rules of a temporary rule file.
func TestPromtoolDashboardQueries(t *testing.T) {
	tool := promtool(t)
	panels, _ := allPanels(loadDashboard(t))
	type recording struct {
		Record string `yaml:"record"`
		Expr   string `yaml:"expr"`
	}
	var rules []recording
	for _, p := range panels {
		for _, tg := range p.Targets {
			rules = append(rules, recording{Record: fmt.Sprintf("dashboard:panel%d:%s", p.ID, tg.RefID), Expr: tg.Expr})
		}
	}
	data, err := yaml.Marshal(map[string]any{"groups": []any{map[string]any{"name": "dashboard", "rules": rules}}})
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "dashboard-queries.yaml")
	if err := os.WriteFile(file, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(tool, "check", "rules", file).CombinedOutput(); err != nil {
		t.Fatalf("promtool rejects a dashboard query: %v\n%s", err, out)
	}
}
