// Package telemetry owns what the agent shows to operators: the Prometheus
// metrics registry (every metric is registered here, exactly once), the
// health and readiness state, the HTTP endpoints /metrics, /config, /health
// and /ready, the pprof endpoints, and the construction of the logger.
//
// It must not know about PLCs, the buffer's format or any sink's protocol:
// other packages report into the fields of [Metrics] and into [Health] with
// bounded label values (a sink name, a queue name, a driver name — never a
// tag), and the agent hands it the effective configuration already redacted.
//
// The metric names are a contract with the operations manual (its alerts and
// dashboards divide them by each other); they must not be renamed.
package telemetry
