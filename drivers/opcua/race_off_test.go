//go:build !race

package opcua_test

// raceDetector is set when the tests run with the race detector.
const raceDetector = false
