package monitoring

import (
	"bytes"
	"os"
	"testing"

	"go.yaml.in/yaml/v3"
)

// ruleFile is Prometheus' rule-file format, decoded strictly so that a
// misspelt key fails here rather than in Prometheus.
type ruleFile struct {
	Groups []struct {
		Name     string `yaml:"name"`
		Interval string `yaml:"interval"`
		Rules    []rule `yaml:"rules"`
	} `yaml:"groups"`
}

type rule struct {
	Alert         string            `yaml:"alert"`
	Record        string            `yaml:"record"`
	Expr          string            `yaml:"expr"`
	For           string            `yaml:"for"`
	KeepFiringFor string            `yaml:"keep_firing_for"`
	Labels        map[string]string `yaml:"labels"`
	Annotations   map[string]string `yaml:"annotations"`
}

// decodeStrict decodes a YAML file into v, rejecting unknown keys.
func decodeStrict(t *testing.T, file string, v any) {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(v); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
}

func loadRules(t *testing.T) map[string]rule {
	t.Helper()
	var rf ruleFile
	decodeStrict(t, "prometheus-rules.yaml", &rf)
	alerts := map[string]rule{}
	for _, g := range rf.Groups {
		if g.Name == "" || len(g.Rules) == 0 {
			t.Errorf("group %q: want a name and rules", g.Name)
		}
		for _, r := range g.Rules {
			if r.Alert == "" {
				t.Errorf("group %s: a rule without alert: (this file holds alerts only): %q", g.Name, r.Expr)
				continue
			}
			if _, dup := alerts[r.Alert]; dup {
				t.Errorf("alert %s defined twice", r.Alert)
			}
			alerts[r.Alert] = r
		}
	}
	return alerts
}

// TestManualAlerts checks the ops manual's three alerts, word for word.
func TestManualAlerts(t *testing.T) {
	alerts := loadRules(t)
	for _, want := range []rule{
		{
			Alert: "HighErrorRate",
			Expr:  "rate(kafka_send_errors_total[5m]) / rate(kafka_messages_sent_total[5m]) > 0.01",
			For:   "2m", Labels: map[string]string{"severity": "critical"},
			Annotations: map[string]string{"summary": "消息发送错误率过高", "description": "错误率: {{ $value | humanizePercentage }}"},
		},
		{
			Alert: "HighLatency",
			Expr:  "histogram_quantile(0.95, rate(kafka_send_duration_seconds_bucket[5m])) > 0.1",
			For:   "5m", Labels: map[string]string{"severity": "warning"},
			Annotations: map[string]string{"summary": "消息发送延迟过高", "description": "95%延迟: {{ $value }}s"},
		},
		{
			Alert: "HighMemoryUsage",
			Expr:  "process_resident_memory_bytes / 1024 / 1024 > 400",
			For:   "5m", Labels: map[string]string{"severity": "warning"},
			Annotations: map[string]string{"summary": "内存使用率过高", "description": "内存使用: {{ $value }}MB"},
		},
	} {
		t.Run(want.Alert, func(t *testing.T) {
			got, ok := alerts[want.Alert]
			if !ok {
				t.Fatalf("alert %s of the ops manual is missing", want.Alert)
			}
			if got.Expr != want.Expr {
				t.Errorf("expr = %q, the manual's is %q", got.Expr, want.Expr)
			}
			if got.For != want.For {
				t.Errorf("for = %q, want %q", got.For, want.For)
			}
			for k, v := range want.Labels {
				if got.Labels[k] != v {
					t.Errorf("label %s = %q, want %q", k, got.Labels[k], v)
				}
			}
			for k, v := range want.Annotations {
				if got.Annotations[k] != v {
					t.Errorf("annotation %s = %q, want %q", k, got.Annotations[k], v)
				}
			}
		})
	}
}

// TestRulesUseExportedMetrics fails when a rule names a metric or label
// the agent does not export, for example after a rename in telemetry.
func TestRulesUseExportedMetrics(t *testing.T) {
	known := exported(t)
	for name, r := range loadRules(t) {
		t.Run(name, func(t *testing.T) {
			for _, p := range checkExpr(r.Expr, known) {
				t.Error(p)
			}
			if s := r.Labels["severity"]; s != "critical" && s != "warning" {
				t.Errorf("severity %q, want critical or warning", s)
			}
			if r.Annotations["summary"] == "" || r.Annotations["description"] == "" {
				t.Error("want summary and description annotations")
			}
		})
	}
}

// TestRuleTestsUseExportedMetrics checks the input series of the promtool
// unit tests, so that they exercise the real names.
func TestRuleTestsUseExportedMetrics(t *testing.T) {
	var rt struct {
		RuleFiles          []string `yaml:"rule_files"`
		EvaluationInterval string   `yaml:"evaluation_interval"`
		Tests              []struct {
			Name        string `yaml:"name"`
			Interval    string `yaml:"interval"`
			InputSeries []struct {
				Series string `yaml:"series"`
				Values string `yaml:"values"`
			} `yaml:"input_series"`
			AlertRuleTest []struct {
				EvalTime  string `yaml:"eval_time"`
				AlertName string `yaml:"alertname"`
				ExpAlerts []struct {
					ExpLabels      map[string]string `yaml:"exp_labels"`
					ExpAnnotations map[string]string `yaml:"exp_annotations"`
				} `yaml:"exp_alerts"`
			} `yaml:"alert_rule_test"`
		} `yaml:"tests"`
	}
	decodeStrict(t, "prometheus-rules.test.yaml", &rt)
	known := exported(t)
	alerts := loadRules(t)
	tested := map[string]bool{}
	for _, tc := range rt.Tests {
		for _, s := range tc.InputSeries {
			for _, p := range checkExpr(s.Series, known) {
				t.Errorf("test %q: %s", tc.Name, p)
			}
		}
		for _, a := range tc.AlertRuleTest {
			if _, ok := alerts[a.AlertName]; !ok {
				t.Errorf("test %q: no alert %s", tc.Name, a.AlertName)
			}
			if len(a.ExpAlerts) > 0 {
				tested[a.AlertName] = true
			}
		}
	}
	for name := range alerts {
		if !tested[name] {
			t.Errorf("alert %s: no promtool test expects it to fire", name)
		}
	}
}
