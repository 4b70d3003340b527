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

// promtool returns Prometheus' promtool from $PROMTOOL or the PATH, and
// skips the test when there is none: monitoring/promtool.sh fetches one and
// runs these tests with it.
func promtool(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("PROMTOOL"); p != "" {
		return p
	}
	p, err := exec.LookPath("promtool")
	if err != nil {
		t.Skip("promtool not found: run monitoring/promtool.sh, or set PROMTOOL")
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
