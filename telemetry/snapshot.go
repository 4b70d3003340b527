package telemetry

import (
	"math"
	"sort"

	dto "github.com/prometheus/client_model/go"
)

// MetricsSnapshot is one gathering of a Metrics registry, for programs that
// show numbers themselves (the demo) and for tests that read back what the
// /metrics endpoint would serve.
type MetricsSnapshot map[string]*dto.MetricFamily

// Snapshot gathers m's registry. A gathering error leaves out the families
// that failed.
func Snapshot(m *Metrics) MetricsSnapshot {
	fams, _ := m.Registry().Gather()
	out := make(MetricsSnapshot, len(fams))
	for _, f := range fams {
		out[f.GetName()] = f
	}
	return out
}

// Sum returns the sum over all series of a counter or gauge family, or of a
// histogram's sample counts; 0 when the family is absent.
func (s MetricsSnapshot) Sum(name string) float64 {
	f, ok := s[name]
	if !ok {
		return 0
	}
	var sum float64
	for _, m := range f.GetMetric() {
		switch {
		case m.Counter != nil:
			sum += m.GetCounter().GetValue()
		case m.Gauge != nil:
			sum += m.GetGauge().GetValue()
		case m.Histogram != nil:
			sum += float64(m.GetHistogram().GetSampleCount())
		}
	}
	return sum
}

// Quantile estimates the q-quantile of a histogram family over all its
// series, interpolating linearly inside a bucket as Prometheus's
// histogram_quantile does. It returns NaN when nothing was observed.
func (s MetricsSnapshot) Quantile(name string, q float64) float64 {
	f, ok := s[name]
	if !ok {
		return math.NaN()
	}
	counts := map[float64]uint64{}
	var total uint64
	for _, m := range f.GetMetric() {
		h := m.GetHistogram()
		if h == nil {
			continue
		}
		total += h.GetSampleCount()
		for _, b := range h.GetBucket() {
			counts[b.GetUpperBound()] += b.GetCumulativeCount()
		}
	}
	if total == 0 {
		return math.NaN()
	}
	bounds := make([]float64, 0, len(counts))
	for b := range counts {
		bounds = append(bounds, b)
	}
	sort.Float64s(bounds)
	rank := q * float64(total)
	lower, prev := 0.0, uint64(0)
	for _, b := range bounds {
		c := counts[b]
		if float64(c) >= rank {
			if c == prev {
				return b
			}
			return lower + (b-lower)*(rank-float64(prev))/float64(c-prev)
		}
		lower, prev = b, c
	}
	return bounds[len(bounds)-1]
}

// Get returns the sum of a family's series whose label has value, as Sum
// does for the whole family; 0 when there are none.
func (s MetricsSnapshot) Get(name, label, value string) float64 {
	f, ok := s[name]
	if !ok {
		return 0
	}
	one := MetricsSnapshot{name: &dto.MetricFamily{Name: f.Name, Type: f.Type}}
	for _, m := range f.GetMetric() {
		for _, l := range m.GetLabel() {
			if l.GetName() == label && l.GetValue() == value {
				one[name].Metric = append(one[name].Metric, m)
			}
		}
	}
	return one.Sum(name)
}
