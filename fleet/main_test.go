package fleet_test

import (
	"os"
	"testing"

	"go.uber.org/goleak"

	"github.com/apppigeon/pigeon/internal/etcdtest"
)

// TestMain runs an etcd member (etcdtest.StartProcesses) or a pigeon "process" of the fleet tests when the test binary
// was started as one (childEnv set; see harness_test.go), else the tests
// under goleak.
func TestMain(m *testing.M) {
	if code := etcdtest.MemberMain(); code >= 0 {
		os.Exit(code)
	}
	if os.Getenv(childEnv) != "" {
		os.Exit(childMain())
	}
	goleak.VerifyTestMain(m)
}
