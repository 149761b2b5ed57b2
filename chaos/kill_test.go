package chaos_test

import (
	"context"

	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/cepcomunicacion/cepjobs/internal/vendortest"
)

// heldTask is a task a killed worker was running.
type heldTask struct {
	id, typ string
	// reclaimed: asynq's recoverer took it back from the dead worker (it
	// left the active state); done: it ran again to completion.
	reclaimed, done time.Time
}

type killRecord struct {
	at   time.Time
	held []*heldTask
}

// TestWorkerSIGKILLUnderLoad: leads stream in while the automation worker
// is killed with SIGKILL at random moments and restarted at once. Every
// task the dead worker held must run again, and the time that takes is
// measured: asynq only lets a task go after its lease (30 s, renewed every
// 5 s) has been expired for 30 s more, and its recoverer looks every minute
// and when a server starts (see docs/operations.md, "A worker was killed").
func TestWorkerSIGKILLUnderLoad(t *testing.T) {
	scenario(t)
	n, rate, kills := lengths(300, 10000), lengths(100.0, 500.0), lengths(1, 5)
	c := newCluster(t, clusterOpts{workers: 1})
	// Vendors answer in 30 ms, so calls are in flight at every kill.
	for _, s := range c.v.all() {
		s.Fail(vendortest.Fault{Delay: 30 * time.Millisecond})
	}
	start := time.Now()
	ld := c.stream(context.Background(), n, rate)

	// Random kill moments within the run: in the short version while leads
	// are still coming; in the full one across posting and the backlog.
	window := lengths(3*time.Second, 75*time.Second)
	var at []time.Duration
	for range kills {
		at = append(at, 2*time.Second+rand.N(window))
	}
	slices.Sort(at)
	var records []*killRecord
	var mu sync.Mutex
	var wg sync.WaitGroup
	tracked := map[string]bool{}
	for _, d := range at {
		time.Sleep(time.Until(start.Add(d)))
		w := c.workers[len(c.workers)-1]
		w.kill()
		rec := &killRecord{at: time.Now()}
		active, err := c.insp.ListActiveTasks("critical", asynq.PageSize(5000))
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range active {
			if !tracked[a.ID] { // still held by an earlier dead worker
				tracked[a.ID] = true
				rec.held = append(rec.held, &heldTask{id: a.ID, typ: a.Type})
			}
		}
		c.startWorker()
		t.Logf("kill %d at +%s: the worker held %d tasks; a new worker started %s later",
			len(records)+1, rec.at.Sub(start).Round(time.Millisecond), len(rec.held), time.Since(rec.at).Round(time.Millisecond))
		records = append(records, rec)
		wg.Go(func() { c.follow(rec, &mu, lengths(4*time.Minute, 10*time.Minute)) })
	}
	ld.wait()
	accepted := ld.accepted()
	t.Logf("load: %s in %s", ld.summary(), time.Since(start).Round(time.Millisecond))
	settle := c.waitSettled(ids(accepted), lengths(4*time.Minute, 15*time.Minute))
	wg.Wait()
	t.Logf("every lead settled %s after the last was accepted (%s after the start); %s",
		settle.Round(time.Millisecond), time.Since(start).Round(time.Millisecond), vendorTotals(c.v))

	var longestReclaim, longestDone time.Duration
	for i, r := range records {
		var reclaim, done time.Duration
		for _, h := range r.held {
			if h.reclaimed.IsZero() || h.done.IsZero() {
				t.Errorf("kill %d: task %s (%s) held by the dead worker never ran again (reclaimed %v, done %v)", i+1, h.id, h.typ, !h.reclaimed.IsZero(), !h.done.IsZero())
				continue
			}
			reclaim = max(reclaim, h.reclaimed.Sub(r.at))
			done = max(done, h.done.Sub(r.at))
		}
		// The bound: the recoverer of the first worker started at or after
		// this kill that lived 60 s runs 60 s after its start, when every
		// lease of the dead worker has been expired 30 s. A worker killed
		// before its 60 s never runs that second recovery. Running again
		// then takes the forwarder (retry → pending, 5 s) and the wait
		// behind whatever backlog the queue holds.
		j := i
		for j+1 < len(records) && records[j+1].at.Sub(records[j].at) < 60*time.Second {
			j++
		}
		bound := records[j].at.Add(60*time.Second + 15*time.Second).Sub(r.at)
		t.Logf("kill %d: %d held tasks; longest kill→reclaimed %s (bound %s), kill→re-processed %s (a reclaimed task joins the back of the queue)",
			i+1, len(r.held), reclaim.Round(time.Millisecond), bound.Round(time.Second), done.Round(time.Millisecond))
		if reclaim > bound {
			t.Errorf("kill %d: a held task was reclaimed %s after the kill, beyond the %s asynq's recovery explains", i+1, reclaim, bound)
		}
		longestReclaim, longestDone = max(longestReclaim, reclaim), max(longestDone, done)
	}
	t.Logf("RESULT worker SIGKILL: %d kills; longest kill→reclaimed %s, kill→re-processed %s (asynq floor: lease 30 s + 30 s skew allowance, recoverer every 60 s)",
		kills, longestReclaim.Round(time.Millisecond), longestDone.Round(time.Millisecond))
	o := c.check(t, accepted, kills*20) // at most the worker's concurrency per kill
	t.Logf("RESULT invariant: %s", o)
}

// follow polls the held tasks of one kill until each has run again.
func (c *cluster) follow(r *killRecord, mu *sync.Mutex, timeout time.Duration) {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		pending := 0
		for _, h := range r.held {
			if !h.done.IsZero() {
				continue
			}
			info, err := c.insp.GetTaskInfo("critical", h.id)
			now := time.Now()
			if err != nil {
				pending++
				continue
			}
			mu.Lock()
			if info.State != asynq.TaskStateActive && h.reclaimed.IsZero() {
				h.reclaimed = now
			}
			if info.State == asynq.TaskStateCompleted {
				if h.reclaimed.IsZero() {
					h.reclaimed = now
				}
				h.done = now
			} else {
				pending++
			}
			mu.Unlock()
		}
		if pending == 0 {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
}
