package backup

import (
	"sync"
	"time"
)

// Steps reported through Progress.
const (
	StepCheck    = "check"    // versions, connection, bucket
	StepDump     = "dump"     // pg_dump streaming into the bucket
	StepFinalize = "finalize" // manifest, copy to the final key
	StepRestore  = "restore"  // the backup streaming into pg_restore
	StepCreate   = "create"   // Verify's scratch database
	StepCount    = "count"    // Verify counting restored rows
	StepDone     = "done"
)

// Progress is reported at each step and about once a second while bytes
// flow. Callbacks are never concurrent, but run on the streaming path:
// they must return quickly.
type Progress struct {
	Step    string
	Bytes   int64         // streamed so far in this step
	Elapsed time.Duration // since the operation started
}

// progressEvery throttles byte reports: a callback per read would cost more
// than the copy for a fast disk, and a CLI redraws no faster anyway.
const progressEvery = time.Second

// reporter calls fn one call at a time, whichever goroutine reports.
type reporter struct {
	fn    func(Progress)
	start time.Time

	mu    sync.Mutex
	step  string
	last  time.Time
	bytes int64
}

func newReporter(fn func(Progress)) *reporter {
	return &reporter{fn: fn, start: time.Now()}
}

// stepTo reports the start of a step.
func (r *reporter) stepTo(step string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.step, r.bytes, r.last = step, 0, time.Now()
	r.call()
}

// add counts n more bytes, reporting if a report is due.
func (r *reporter) add(n int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.bytes += n
	if now := time.Now(); now.Sub(r.last) >= progressEvery {
		r.last = now
		r.call()
	}
}

func (r *reporter) elapsed() time.Duration { return time.Since(r.start) }

func (r *reporter) call() {
	if r.fn != nil {
		r.fn(Progress{Step: r.step, Bytes: r.bytes, Elapsed: time.Since(r.start)})
	}
}
