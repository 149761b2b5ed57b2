package chaos_test

import (
	"context"
	"testing"
	"time"
)

// TestRollingDeploy: while leads stream in, each worker in turn gets a
// successor and then SIGTERM, as a rolling deploy does. Vendor calls take
// 100 ms, so every SIGTERM finds tasks in flight. No task may fail (each
// delivery takes one attempt), none may be lost, each old worker exits 0.
func TestRollingDeploy(t *testing.T) {
	scenario(t)
	workers, rounds := lengths(2, 3), lengths(1, 2)
	n, rate := lengths(300, 6000), lengths(40.0, 100.0)
	c := newCluster(t, clusterOpts{workers: workers})
	for _, s := range c.v.all() {
		s.Fail(vendortestDelay(100 * time.Millisecond))
	}
	start := time.Now()
	ld := c.stream(context.Background(), n, rate)
	time.Sleep(2 * time.Second)
	stopped := 0
	var longest time.Duration
	for range rounds {
		old := append([]*proc(nil), c.workers[len(c.workers)-workers:]...)
		for _, w := range old {
			c.startWorker()
			t0 := time.Now()
			err, ok := w.term(40 * time.Second)
			took := time.Since(t0)
			longest = max(longest, took)
			if !ok {
				t.Fatalf("%s did not exit within 40 s of SIGTERM", w.name)
			}
			if err != nil {
				t.Errorf("%s: exit %v, want status 0", w.name, err)
			}
			stopped++
			time.Sleep(lengths(time.Second, 3*time.Second))
		}
	}
	t.Logf("rolled %d workers (%d rounds of %d) starting at +2 s; longest SIGTERM→exit %s", stopped, rounds, workers, longest.Round(time.Millisecond))
	ld.wait()
	accepted := ld.accepted()
	t.Logf("load: %s in %s", ld.summary(), time.Since(start).Round(time.Millisecond))
	settle := c.waitSettled(ids(accepted), lengths(3*time.Minute, 10*time.Minute))
	t.Logf("every lead settled %s after the last was accepted; %s", settle.Round(time.Millisecond), vendorTotals(c.v))
	failed := logLines(c.workers, `"task failed"`)
	if failed > 0 {
		t.Errorf("%d tasks failed during the rollout", failed)
	}
	o := c.check(t, accepted, 0)
	for ch, k := range o.attempts {
		if k > 0 {
			t.Errorf("%s: %d deliveries took more than one attempt during the rollout", ch, k)
		}
	}
	name := "3 workers × 2 rounds"
	if mode == modeShort {
		name = "2 workers × 1 round (short)"
	}
	t.Logf("RESULT rolling deploy %s: %d SIGTERMs, longest exit %s, %d failed tasks; invariant: %s", name, stopped, longest.Round(time.Millisecond), failed, o)
}
