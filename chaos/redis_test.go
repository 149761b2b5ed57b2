package chaos_test

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestRedisOutage: Redis goes away while leads stream in. The intake keeps
// answering 202 (the outbox holds what Redis cannot take), and every lead
// is processed once Redis is back.
//
//   - stopped: redis-server is shut down (SIGTERM: the AOF is complete) and
//     started again after 20 s (5 s in the short version);
//   - killed: redis-server is SIGKILLed and its AOF cut back to its size one
//     second before the kill, which is what appendfsync everysec may lose
//     when the machine (not only the process) dies, then restarted. Tasks
//     enqueued in that second are gone from Redis while Postgres has their
//     leads queued (with no outbox row, or one marked dispatched): the lead
//     sweep must find and re-enqueue them.
func TestRedisOutage(t *testing.T) {
	scenario(t)
	// Each waits out asynq's lease recovery for the tasks in flight at the
	// outage (see docs/reliability.md); in the short run they wait together.
	t.Run("stopped", func(t *testing.T) {
		if mode == modeShort {
			t.Parallel()
		}
		redisOutage(t, false, lengths(5*time.Second, 20*time.Second))
	})
	t.Run("killed", func(t *testing.T) {
		if mode == modeShort {
			t.Parallel()
		}
		redisOutage(t, true, lengths(2*time.Second, 5*time.Second))
	})
}

func redisOutage(t *testing.T, kill bool, down time.Duration) {
	n, rate := lengths(400, 6000), lengths(40.0, 150.0)
	c := newCluster(t, clusterOpts{workers: 1})
	for _, s := range c.v.all() {
		s.Fail(vendortestDelay(20 * time.Millisecond))
	}
	start := time.Now()
	ld := c.stream(context.Background(), n, rate)

	// The AOF's size, sampled every 100 ms, to cut it back one second.
	var mu sync.Mutex
	type sample struct {
		at   time.Time
		path string
		size int64
	}
	var sizes []sample
	stopSampling := make(chan struct{})
	var sampling sync.WaitGroup
	sampling.Go(func() {
		for {
			select {
			case <-stopSampling:
				return
			case <-time.After(100 * time.Millisecond):
			}
			if p, err := c.redis.AOFIncrement(); err == nil {
				if fi, err := os.Stat(p); err == nil {
					mu.Lock()
					sizes = append(sizes, sample{time.Now(), p, fi.Size()})
					mu.Unlock()
				}
			}
		}
	})

	time.Sleep(lengths(3*time.Second, 10*time.Second))
	before202 := ld.code(http.StatusAccepted)
	var outageAt time.Time
	if kill {
		c.redis.Kill()
		outageAt = time.Now()
		close(stopSampling)
		sampling.Wait()
		cur, err := c.redis.AOFIncrement()
		if err != nil {
			t.Fatal(err)
		}
		fi, err := os.Stat(cur)
		if err != nil {
			t.Fatal(err)
		}
		// The newest sample at least one second old.
		cut := int64(-1)
		for _, s := range sizes {
			if s.at.Before(outageAt.Add(-time.Second)) && s.path == cur {
				cut = s.size
			}
		}
		if cut < 0 {
			cut = 0
		}
		lost := aofCommands(cur, cut)
		if err := os.Truncate(cur, cut); err != nil {
			t.Fatal(err)
		}
		t.Logf("redis SIGKILLed at +%s; AOF cut from %d to %d bytes (the last second of writes: %d bytes, %d commands)",
			outageAt.Sub(start).Round(time.Millisecond), fi.Size(), cut, fi.Size()-cut, lost)
	} else {
		close(stopSampling)
		sampling.Wait()
		c.redis.Stop()
		outageAt = time.Now()
		t.Logf("redis stopped (SIGTERM) at +%s", outageAt.Sub(start).Round(time.Millisecond))
	}
	time.Sleep(down)
	during202 := ld.code(http.StatusAccepted) - before202
	c.redis.Start()
	t.Logf("redis back after %s (loaded its AOF); %d leads accepted meanwhile", time.Since(outageAt).Round(time.Millisecond), during202)

	ld.wait()
	accepted := ld.accepted()
	t.Logf("load: %s", ld.summary())
	if during202 == 0 {
		t.Error("no lead accepted while redis was down")
	}
	for code, n := range ld.codesCopy() {
		if code != http.StatusAccepted {
			t.Errorf("%d answers %d: the intake must answer 202 whatever Redis does", n, code)
		}
	}
	settle := c.waitSettled(ids(accepted), lengths(3*time.Minute, 10*time.Minute))
	swept := metricValue(t, c.api+"/metrics", "cepjobs_sweep_reenqueued_total")
	relayed := metricValue(t, c.api+"/metrics", `cepjobs_outbox_dispatched_total{path="relay"}`)
	t.Logf("every lead settled %s after the last was accepted; outbox relay sent %.0f, lead sweep re-enqueued %.0f lost tasks; %s",
		settle.Round(time.Millisecond), relayed, swept, vendorTotals(c.v))
	o := c.check(t, accepted, 0)
	name := fmt.Sprintf("stopped %s", down)
	if kill {
		name = "SIGKILL + AOF cut by 1 s"
	}
	if mode == modeShort {
		name += " (short)"
	}
	t.Logf("RESULT redis %s: %d leads accepted during the outage, all answers 202; relay %.0f, sweep %.0f; invariant: %s", name, during202, relayed, swept, o)
}

// aofCommands counts the commands (RESP arrays at the start of a line)
// from byte offset from to the end of an AOF.
func aofCommands(path string, from int64) int {
	f, err := os.Open(path)
	if err != nil {
		return -1
	}
	defer f.Close()
	if _, err := f.Seek(from, 0); err != nil {
		return -1
	}
	n := 0
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if line := sc.Text(); strings.HasPrefix(line, "*") && len(line) > 1 && line[1] >= '0' && line[1] <= '9' {
			n++
		}
	}
	return n
}

// metricValue reads a sample from a Prometheus text endpoint: name with its
// labels (`x{a="b"}`) for one series, or a bare name for the sum of all its
// series (0 when absent, -1 when the endpoint does not answer).
func metricValue(t *testing.T, url, name string) float64 {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Logf("scrape %s: %v", url, err)
		return -1
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	sum := 0.0
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") {
			continue
		}
		series, value, ok := strings.Cut(line, " ")
		if !ok {
			continue
		}
		base, _, _ := strings.Cut(series, "{")
		if series == name || (!strings.Contains(name, "{") && base == name) {
			v, _ := strconv.ParseFloat(strings.TrimSpace(value), 64)
			sum += v
		}
	}
	return sum
}
