//go:build !race

package pigeon_test

// raceDetector: the race detector is on (tests size their soaks by it).
const raceDetector = false
