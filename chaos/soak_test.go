package chaos_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cepcomunicacion/cepjobs/internal/testenv"
)

// TestSoak: leads at a steady rate for ten minutes at 300/s (`make soak`;
// 30 s at 20/s in `make test`) through the whole fleet (intake,
// worker-automation, worker-stats, scheduler). Every 10 s each binary's
// resident memory and goroutine count are sampled (from /metrics, or /proc
// for the scheduler, which serves none); after a warm-up both must stay
// flat. The slope is reported per minute.
func TestSoak(t *testing.T) {
	if mode == modeShort {
		t.Parallel()
	}
	dur, rate, every := lengths(30*time.Second, 10*time.Minute), lengths(20.0, 300.0), lengths(3*time.Second, 10*time.Second)
	c := newCluster(t, clusterOpts{workers: 1, lean: mode == modeSoak})
	statsPort := testenv.FreePort(t)
	stats := startProc(t, c.dir, "worker-stats", bins["worker-stats"], append(c.env, fmt.Sprintf("CEPJOBS_STATS_METRICS_ADDR=127.0.0.1:%d", statsPort)))
	stats.metrics = fmt.Sprintf("http://127.0.0.1:%d", statsPort)
	stats.waitHTTP(t, stats.metrics+"/healthz", 60*time.Second)
	sched := startProc(t, c.dir, "scheduler", bins["scheduler"], c.env)
	procs := []*proc{c.intake, c.workers[0], stats, sched}

	type sample struct {
		at         time.Duration
		rss        []float64 // MiB per proc
		goroutines []float64 // per proc; -1 when unknown
	}
	var samples []sample
	start := time.Now()
	ctx := context.Background()
	ld := c.stream(ctx, int(rate*dur.Seconds()), rate)
	take := func() {
		s := sample{at: time.Since(start)}
		for _, p := range procs {
			rss, g := -1.0, -1.0
			if p.metrics != "" {
				rss = metricValue(t, p.metrics+"/metrics", "process_resident_memory_bytes") / (1 << 20)
				g = metricValue(t, p.metrics+"/metrics", "go_goroutines")
			}
			if rss <= 0 {
				rss = procRSS(p.cmd.Process.Pid)
			}
			if sched.exited() && p == sched {
				t.Fatalf("scheduler exited: %v\n%s", p.err, p.tail(3000))
			}
			s.rss, s.goroutines = append(s.rss, rss), append(s.goroutines, g)
		}
		samples = append(samples, s)
	}
	take()
	for time.Since(start) < dur {
		time.Sleep(every)
		take()
		last := samples[len(samples)-1]
		if mode == modeSoak {
			t.Logf("  +%s: %d accepted; RSS MiB intake %.0f, worker %.0f, stats %.0f, scheduler %.0f; goroutines %.0f, %.0f, %.0f; redis %s",
				last.at.Round(time.Second), ld.count(), last.rss[0], last.rss[1], last.rss[2], last.rss[3],
				last.goroutines[0], last.goroutines[1], last.goroutines[2], c.queueState())
		}
	}
	ld.wait()
	accepted := ld.accepted()
	t.Logf("load: %s in %s", ld.summary(), time.Since(start).Round(time.Millisecond))
	// Drain: on a machine that cannot process 300 leads/s (1,500 tasks/s)
	// the backlog outlasts any sensible wait; the soak is about leaks, so
	// it waits a bounded time, reports what is left, and checks the
	// invariant on the leads that settled (and that none is missing).
	drainStart := time.Now()
	drained := c.drain(ids(accepted), lengths(3*time.Minute, 10*time.Minute))
	take() // after draining
	t.Logf("%d of %d leads settled within %s of the last being accepted; %s; redis %s",
		len(drained), len(accepted), time.Since(drainStart).Round(time.Second), vendorTotals(c.v), c.queueState())
	if mode == modeShort && len(drained) != len(accepted) {
		t.Errorf("%d leads not settled", len(accepted)-len(drained))
	}

	// Slopes over the samples taken under load, after a warm-up of a fifth
	// of the run (pools fill, caches warm).
	var xs []float64
	from := 0
	for i, s := range samples {
		if s.at >= dur/5 && from == 0 {
			from = i
		}
	}
	for _, s := range samples[from : len(samples)-1] {
		xs = append(xs, s.at.Minutes())
	}
	var report []string
	for i, p := range procs {
		var rss, gs []float64
		for _, s := range samples[from : len(samples)-1] {
			rss, gs = append(rss, s.rss[i]), append(gs, s.goroutines[i])
		}
		rSlope, gSlope := slope(xs, rss), slope(xs, gs)
		first, last := samples[from], samples[len(samples)-2]
		drained := samples[len(samples)-1]
		line := fmt.Sprintf("%-17s RSS %.1f → %.1f MiB (slope %+.2f MiB/min, %.1f after draining)", p.name, first.rss[i], last.rss[i], rSlope, drained.rss[i])
		if gs[0] >= 0 {
			line += fmt.Sprintf(", goroutines %.0f → %.0f (slope %+.2f/min, %.0f after draining)", first.goroutines[i], last.goroutines[i], gSlope, drained.goroutines[i])
			// Flat: no steady climb. A leak of one goroutine per request
			// would climb by thousands per minute.
			if limit := 10.0 + 0.05*mean(gs); gSlope*dur.Minutes() > limit && drained.goroutines[i] > first.goroutines[i]+limit {
				t.Errorf("%s: goroutines climb %+.1f/min and stay up after draining (%.0f → %.0f)", p.name, gSlope, first.goroutines[i], drained.goroutines[i])
			}
		}
		// Memory: a steady climb of more than a quarter of the process's
		// size over the run, still there once the backlog is gone.
		if rSlope*dur.Minutes() > 0.25*mean(rss)+8 && drained.rss[i] > first.rss[i]*1.25+8 {
			t.Errorf("%s: RSS climbs %+.2f MiB/min and stays up after draining (%.1f → %.1f MiB)", p.name, rSlope, first.rss[i], drained.rss[i])
		}
		report = append(report, line)
	}
	t.Logf("RESULT soak %s at %.0f leads/s, sampled every %s (slopes after a %s warm-up):\n    %s",
		dur, rate, every, (dur / 5).Round(time.Second), strings.Join(report, "\n    "))
	settled := map[string]bool{}
	for _, id := range drained {
		settled[id] = true
	}
	var done []lead
	for _, l := range accepted {
		if settled[l.id] {
			done = append(done, l)
		}
	}
	var present int
	if err := c.db.QueryRow(ctx, `select count(*) from cepjobs.leads where id = any($1::uuid[])`, ids(accepted)).Scan(&present); err != nil {
		t.Fatal(err)
	}
	if present != len(accepted) {
		t.Errorf("%d accepted leads missing from postgres", len(accepted)-present)
	}
	o := c.check(t, done, 0)
	t.Logf("RESULT invariant (all %d accepted leads in postgres; %d settled and checked): %s", len(accepted), len(done), o)
}

// slope is the least-squares slope of ys over xs.
func slope(xs, ys []float64) float64 {
	if len(xs) < 2 {
		return 0
	}
	mx, my := mean(xs), mean(ys)
	var num, den float64
	for i := range xs {
		num += (xs[i] - mx) * (ys[i] - my)
		den += (xs[i] - mx) * (xs[i] - mx)
	}
	if den == 0 {
		return 0
	}
	return num / den
}

func mean(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := 0.0
	for _, x := range v {
		s += x
	}
	return s / float64(len(v))
}

// procRSS reads VmRSS of a process in MiB (-1 if unknown).
func procRSS(pid int) float64 {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return -1
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
			return kb / 1024
		}
	}
	return -1
}
