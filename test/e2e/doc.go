// Package e2e holds the end-to-end tests: the agent binary against a real
// Apache Kafka broker started by scripts/kafka.sh (see scripts/e2e.sh and
// `make e2e`). They are built only with the e2e build tag.
package e2e
