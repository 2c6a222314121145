package fleet_test

import (
	"os"
	"testing"

	"go.uber.org/goleak"
)

// TestMain runs a pigeon "process" of the fleet tests when the test binary
// was started as one (childEnv set; see harness_test.go), else the tests
// under goleak.
func TestMain(m *testing.M) {
	if os.Getenv(childEnv) != "" {
		os.Exit(childMain())
	}
	goleak.VerifyTestMain(m)
}
