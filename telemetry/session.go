package telemetry

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// SessionSnapshot is what a session-holding source reports at scrape time.
type SessionSnapshot struct {
	Connected     bool
	Subscriptions int
	ItemsGood     int
	ItemsBad      int
	Recoveries    uint64
}

// sessionCollector exports the sessions of the sources that hold one (OPC
// UA), read at scrape time from the drivers themselves:
//
//	iot_driver_connected{source}        1 while the session reads, else 0
//	iot_driver_subscriptions{source}    subscriptions of the session
//	iot_driver_items{source,quality}    tags whose last sample was good or bad
//	iot_driver_recoveries_total{source} sessions rebuilt after a failure
type sessionCollector struct {
	mu      sync.Mutex
	sources map[string]func() SessionSnapshot

	connected, subs, items, recoveries *prometheus.Desc
}

func newSessionCollector() *sessionCollector {
	src := []string{LabelSource}
	return &sessionCollector{
		sources:    map[string]func() SessionSnapshot{},
		connected:  prometheus.NewDesc("iot_driver_connected", "1 while the driver's session with its device reads, else 0.", src, nil),
		subs:       prometheus.NewDesc("iot_driver_subscriptions", "Subscriptions of the driver's session.", src, nil),
		items:      prometheus.NewDesc("iot_driver_items", "Tags whose last sample was good (or uncertain) or bad.", []string{LabelSource, "quality"}, nil),
		recoveries: prometheus.NewDesc("iot_driver_recoveries_total", "Sessions rebuilt after a failure (server restart, network cut, expired session).", src, nil),
	}
}

func (c *sessionCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.connected
	ch <- c.subs
	ch <- c.items
	ch <- c.recoveries
}

func (c *sessionCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for name, f := range c.sources {
		s := f()
		conn := 0.0
		if s.Connected {
			conn = 1
		}
		ch <- prometheus.MustNewConstMetric(c.connected, prometheus.GaugeValue, conn, name)
		ch <- prometheus.MustNewConstMetric(c.subs, prometheus.GaugeValue, float64(s.Subscriptions), name)
		ch <- prometheus.MustNewConstMetric(c.items, prometheus.GaugeValue, float64(s.ItemsGood), name, "good")
		ch <- prometheus.MustNewConstMetric(c.items, prometheus.GaugeValue, float64(s.ItemsBad), name, "bad")
		ch <- prometheus.MustNewConstMetric(c.recoveries, prometheus.CounterValue, float64(s.Recoveries), name)
	}
}

// AddSessionSource exports the session of source, read with f at each
// scrape, until RemoveSessionSource.
func (m *Metrics) AddSessionSource(source string, f func() SessionSnapshot) {
	m.sessions.mu.Lock()
	m.sessions.sources[source] = f
	m.sessions.mu.Unlock()
}

// RemoveSessionSource stops exporting source's session.
func (m *Metrics) RemoveSessionSource(source string) {
	m.sessions.mu.Lock()
	delete(m.sessions.sources, source)
	m.sessions.mu.Unlock()
}
