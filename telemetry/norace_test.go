//go:build !race

package telemetry

// rssGrowthBound is how much the hostile-client test's child server may
// grow under attack (measured: about 15 MiB). Unbounded headers took
// 300 MiB for 200 connections.
const rssGrowthBound = 48 << 20
