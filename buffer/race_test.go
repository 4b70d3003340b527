//go:build race

package buffer

// raceEnabled shortens the heaviest randomised tests under the race detector.
const raceEnabled = true
