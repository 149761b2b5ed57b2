// Package chaos_test injects faults into a running fleet: the real intake,
// worker-automation, scheduler and worker-stats binaries as separate
// processes, a private redis-server with AOF, PostgreSQL (a database of the
// shared server, or a private cluster where the test must restart it), and
// loopback stand-ins for the vendors that count every call. Each scenario
// streams leads, breaks something, and ends with the same invariant check:
// every accepted lead is in Postgres, completed, delivered on every channel,
// and no channel was called twice for a lead except where the vendor
// de-duplicates (Mailchimp upsert, Meta event_id) or a fault fell between a
// vendor's answer and our record of it (counted and reported).
//
// CEPJOBS_CHAOS selects the lengths: unset, the short versions run in
// `make test` (in parallel, race-instrumented binaries); "full" runs the
// full scenarios one after another (`make chaos`, plain binaries); "soak"
// runs only the ten-minute soak (`make soak`).
package chaos_test

import (
	"fmt"
	"os"
	"testing"

	"github.com/cepcomunicacion/cepjobs/internal/testenv"
)

var (
	bins map[string]string
	mode string
)

const (
	modeShort = "short"
	modeFull  = "full"
	modeSoak  = "soak"
)

func TestMain(m *testing.M) {
	mode = os.Getenv("CEPJOBS_CHAOS")
	switch mode {
	case "":
		mode = modeShort
	case modeFull, modeSoak:
	default:
		fmt.Fprintf(os.Stderr, "CEPJOBS_CHAOS: want full, soak or nothing, got %q\n", mode)
		os.Exit(2)
	}
	// The short versions run with the race detector like every other
	// end-to-end test; the full ones measure timings and memory, which the
	// race detector distorts several times over.
	testenv.Main(m, "cepjobs-chaos-", func(dir string) (func(), error) {
		var err error
		bins, err = testenv.BuildBinariesRace(dir, mode == modeShort, "intake", "worker-automation", "scheduler", "worker-stats")
		return nil, err
	})
}

// lengths picks a scenario's figure for the current mode.
func lengths[T any](short, full T) T {
	if mode == modeShort {
		return short
	}
	return full
}

// scenario marks a test as one of the fault scenarios: parallel in the
// short run, alone in the full run (`make soak` selects TestSoak with -run).
func scenario(t *testing.T) {
	t.Helper()
	if mode == modeShort {
		t.Parallel()
	}
}
