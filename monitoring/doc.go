// Package monitoring holds the Prometheus alerting rules
// (prometheus-rules.yaml, with promtool unit tests in
// prometheus-rules.test.yaml) and the Grafana dashboard
// (grafana-dashboard.json) of iot-producer, and no code. Its tests check
// that every metric and label they use is one the agent exports, by
// gathering telemetry.NewMetrics()'s registry, and that the ops manual's
// alerts are there with the manual's expressions. It knows the agent only
// through its metric names.
package monitoring
