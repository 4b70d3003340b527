package monitoring

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"

	"github.com/iot-producer/iot-producer/telemetry"
)

// family is what a rule or panel may use of one exported metric family.
type family struct {
	labels map[string]bool // label names of its series
}

// targetLabels are added by Prometheus to every scraped series.
var targetLabels = []string{"instance", "job"}

// synthetic are series Prometheus makes itself, not the agent: their
// labels are not checked.
var synthetic = map[string]bool{"ALERTS": true, "ALERTS_FOR_STATE": true, "up": true}

// labelValues are the only values an equality matcher may give these
// labels: the agent sets no others.
var labelValues = map[string][]string{
	telemetry.LabelState: telemetry.UplinkStates,
}

// exported gathers telemetry.NewMetrics()'s registry (the agent's metrics
// and the process and Go collectors) and returns every name a query may use:
// each family's name, and _bucket, _sum, _count of histograms and summaries.
// Vector metrics export nothing until they have a child, so one is created
// for each; a new vector metric must be added here before a rule can use it.
func exported(t *testing.T) map[string]family {
	t.Helper()
	m := telemetry.NewMetrics()
	m.InitSink("kafka")
	m.InitSource("simulator")
	m.SetStatsSource(func() telemetry.Stats {
		return telemetry.Stats{
			Queues: []telemetry.QueueStats{{Queue: "kafka", Sink: "kafka"}},
			Sinks:  []telemetry.SinkStats{{Sink: "kafka", State: telemetry.UplinkConnected}},
		}
	})
	m.Registry().MustRegister(telemetry.NewBufferCollector(func() telemetry.BufferSnapshot {
		return telemetry.BufferSnapshot{Dropped: map[string]map[string]uint64{"kafka": {"max_bytes": 0}}}
	}))
	m.IngestDropped.WithLabelValues("pending_full")
	m.DeadLetter.WithLabelValues("kafka", "message_too_large")
	m.DriverErrors.WithLabelValues("plc", "timeout")
	m.ComponentRestarts.WithLabelValues("sink/kafka")

	mfs, err := m.Registry().Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	out := map[string]family{}
	for _, mf := range mfs {
		f := family{labels: map[string]bool{}}
		for _, l := range targetLabels {
			f.labels[l] = true
		}
		for _, s := range mf.GetMetric() {
			for _, lp := range s.GetLabel() {
				f.labels[lp.GetName()] = true
			}
		}
		name := mf.GetName()
		out[name] = f
		switch mf.GetType() {
		case dto.MetricType_HISTOGRAM:
			hf := family{labels: maps(f.labels, "le")}
			out[name+"_bucket"] = hf
			out[name+"_sum"] = f
			out[name+"_count"] = f
		case dto.MetricType_SUMMARY:
			out[name] = family{labels: maps(f.labels, "quantile")}
			out[name+"_sum"] = f
			out[name+"_count"] = f
		}
	}
	return out
}

// maps returns a copy of labels with extra added.
func maps(labels map[string]bool, extra string) map[string]bool {
	c := map[string]bool{extra: true}
	for k := range labels {
		c[k] = true
	}
	return c
}

// checkExpr returns one problem per selector of expr that names a metric
// the agent does not export, or a label that metric does not have.
func checkExpr(expr string, known map[string]family) []string {
	sels, err := selectors(expr)
	if err != nil {
		return []string{fmt.Sprintf("cannot read %q: %v", expr, err)}
	}
	if len(sels) == 0 {
		return []string{fmt.Sprintf("no metric in %q", expr)}
	}
	var problems []string
	for _, s := range sels {
		if synthetic[s.name] {
			continue
		}
		f, ok := known[s.name]
		if !ok {
			problems = append(problems, fmt.Sprintf("metric %s is not exported by telemetry.NewMetrics() (known: %s)", s.name, near(s.name, known)))
			continue
		}
		for _, mt := range s.matchers {
			if !f.labels[mt.label] {
				problems = append(problems, fmt.Sprintf("%s has no label %q (it has %s)", s.name, mt.label, strings.Join(sortedKeys(f.labels), ", ")))
				continue
			}
			if vals, ok := labelValues[mt.label]; ok && mt.op == "=" && !slices.Contains(vals, mt.value) {
				problems = append(problems, fmt.Sprintf("%s{%s=%q}: the agent sets %s only to %v", s.name, mt.label, mt.value, mt.label, vals))
			}
		}
	}
	return problems
}

// near lists the known names sharing the first word of name, to make a
// rename easy to follow.
func near(name string, known map[string]family) string {
	prefix, _, _ := strings.Cut(name, "_")
	var out []string
	for k := range known {
		if strings.HasPrefix(k, prefix+"_") {
			out = append(out, k)
		}
	}
	sort.Strings(out)
	if len(out) == 0 {
		return "none alike"
	}
	return strings.Join(out, ", ")
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func TestSelectors(t *testing.T) {
	for _, tc := range []struct {
		expr string
		want []string // name{label op value,...}
	}{
		{`rate(kafka_send_errors_total[5m]) / rate(kafka_messages_sent_total[5m]) > 0.01`,
			[]string{"kafka_send_errors_total", "kafka_messages_sent_total"}},
		{`histogram_quantile(0.95, sum by (le, sink) (rate(kafka_send_duration_seconds_bucket{instance=~"$instance"}[5m])))`,
			[]string{`kafka_send_duration_seconds_bucket{instance=~$instance}`}},
		{`process_resident_memory_bytes / 1024 / 1024 > 400`, []string{"process_resident_memory_bytes"}},
		{`increase(x_total[5m]) > 0 or (x_total > 0 unless x_total offset 5m)`, []string{"x_total", "x_total", "x_total"}},
		{`iot_uplink_state{state="backing_off", sink!="mqtt"} == 1`, []string{`iot_uplink_state{state=backing_off,sink!=mqtt}`}},
		{`sum without (kind) (rate(a[1m])) * on (instance) group_left (version) b`, []string{"a", "b"}},
		{`ALERTS{alertname=~"High.+|Iot.+", alertstate="firing"}`, []string{`ALERTS{alertname=~High.+|Iot.+,alertstate=firing}`}},
		{`max_over_time(go_goroutines[1h:5m]) > Inf`, []string{"go_goroutines"}},
	} {
		t.Run(tc.expr, func(t *testing.T) {
			sels, err := selectors(tc.expr)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, s := range sels {
				str := s.name
				if len(s.matchers) > 0 {
					var ms []string
					for _, m := range s.matchers {
						ms = append(ms, m.label+m.op+m.value)
					}
					str += "{" + strings.Join(ms, ",") + "}"
				}
				got = append(got, str)
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
	for _, bad := range []string{`{job="x"}`, `rate(x[5m`, `x{a="b}`, `x{a}`} {
		if _, err := selectors(bad); err == nil {
			t.Errorf("selectors(%q): no error", bad)
		}
	}
}

// TestCheckExprCatchesRenames makes sure the checks used on the rules and
// the dashboard can fail.
func TestCheckExprCatchesRenames(t *testing.T) {
	known := exported(t)
	for _, tc := range []struct {
		expr string
		ok   bool
	}{
		{`rate(kafka_messages_sent_total[5m])`, true},
		{`histogram_quantile(0.95, rate(kafka_send_duration_seconds_bucket[5m]))`, true},
		{`rate(go_gc_duration_seconds_sum[5m])`, true},
		{`rate(process_cpu_seconds_total[5m])`, true},
		{`iot_uplink_state{state="backing_off",instance="gw1"}`, true},
		{`rate(kafka_message_sent_total[5m])`, false},            // renamed
		{`kafka_producer_buffer_depth{queue="kafka"}`, false},    // label of another metric
		{`iot_uplink_state{state="down"}`, false},                // a state the agent never sets
		{`rate(kafka_send_duration_seconds_bucket[5m])[`, false}, // unreadable
	} {
		problems := checkExpr(tc.expr, known)
		if ok := len(problems) == 0; ok != tc.ok {
			t.Errorf("checkExpr(%s): ok = %v, want %v; problems: %v", tc.expr, ok, tc.ok, problems)
		}
	}
}
