//go:build race

package buffer

// raceEnabled is set in builds with the race detector: its shadow memory
// does not fit the isolated check's memory bound, which is then left out,
// and the heaviest randomised tests are shortened.
const raceEnabled = true
