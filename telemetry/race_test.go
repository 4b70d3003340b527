//go:build race

package telemetry

// rssGrowthBound is how much the hostile-client test's child server may
// grow under attack. The race detector's shadow memory and goroutine
// bookkeeping make every connection several times heavier (measured: about
// 90 MiB of growth where the plain build grows 15 MiB).
const rssGrowthBound = 192 << 20
