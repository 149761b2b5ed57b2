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
	"os/exec"
	"path/filepath"
	"testing"
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
	code, err := testMain(m)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Exit(code)
}

func testMain(m *testing.M) (int, error) {
	dir, err := os.MkdirTemp("", "cepjobs-chaos-")
	if err != nil {
		return 0, err
	}
	defer os.RemoveAll(dir)
	// The short versions run with the race detector like every other
	// end-to-end test; the full ones measure timings and memory, which the
	// race detector distorts several times over.
	race := mode == modeShort
	bins = map[string]string{}
	for _, n := range []string{"intake", "worker-automation", "scheduler", "worker-stats"} {
		path := filepath.Join(dir, n)
		args := []string{"build", "-o", path}
		if race {
			args = append(args, "-race")
		}
		cmd := exec.Command("go", append(args, "github.com/cepcomunicacion/cepjobs/cmd/"+n)...)
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			return 0, fmt.Errorf("build %s: %w", n, err)
		}
		bins[n] = path
	}
	return m.Run(), nil
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
