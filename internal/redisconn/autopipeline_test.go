package redisconn_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/cepcomunicacion/cepjobs/internal/redisconn"
	"github.com/cepcomunicacion/cepjobs/internal/testenv"
)

// trips counts what reaches the connection below the AutoPipeline: lone
// commands and pipelines with their sizes.
type trips struct {
	lone, pipelines, piped atomic.Int64
}

func (c *trips) DialHook(next redis.DialHook) redis.DialHook { return next }

func (c *trips) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		c.lone.Add(1)
		return next(ctx, cmd)
	}
}

func (c *trips) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		c.pipelines.Add(1)
		c.piped.Add(int64(len(cmds)))
		return next(ctx, cmds)
	}
}

func autoClient(t *testing.T, addr string, senders int) (*redis.Client, *redisconn.AutoPipeline, *trips) {
	t.Helper()
	// No identity or HELLO: connection set-up would show up in the counts.
	c := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, Protocol: 2, DisableIdentity: true, DialTimeout: time.Second, ReadTimeout: time.Second, WriteTimeout: time.Second})
	a := redisconn.NewAutoPipeline(c, senders)
	tr := &trips{}
	c.AddHook(tr) // inside the AutoPipeline: sees what it sends
	t.Cleanup(func() {
		a.Close()
		_ = c.Close()
	})
	return c, a, tr
}

// start releases n goroutines at once and waits for them.
func start(n int, f func(i int)) {
	var ready, wg sync.WaitGroup
	gate := make(chan struct{})
	ready.Add(n)
	for i := range n {
		wg.Go(func() {
			ready.Done()
			<-gate
			f(i)
		})
	}
	ready.Wait()
	close(gate)
	wg.Wait()
}

func TestAutoPipelineBatchesAndMatchesReplies(t *testing.T) {
	srv := testenv.StartRedisServer(t, false)
	c, _, tr := autoClient(t, srv.Addr(), 1)
	ctx := context.Background()
	echo := redis.NewScript(`return ARGV[1]`)

	const workers, rounds = 200, 20
	var bad atomic.Int64
	var firstErr atomic.Value
	start(workers, func(i int) {
		key := fmt.Sprintf("k%d", i)
		for r := 1; r <= rounds; r++ {
			n, err := c.Incr(ctx, key).Result()
			if err != nil || n != int64(r) {
				bad.Add(1)
				firstErr.CompareAndSwap(nil, fmt.Sprintf("incr %s: %d, %v (want %d)", key, n, err, r))
			}
			want := fmt.Sprintf("%d/%d", i, r)
			got, err := echo.Run(ctx, c, nil, want).Text()
			if err != nil || got != want {
				bad.Add(1)
				firstErr.CompareAndSwap(nil, fmt.Sprintf("script: %q, %v (want %q)", got, err, want))
			}
		}
	})
	if bad.Load() > 0 {
		t.Fatalf("%d wrong replies; first: %v", bad.Load(), firstErr.Load())
	}
	cmds := int64(workers * rounds * 2)
	sent := tr.lone.Load() + tr.piped.Load()
	roundTrips := tr.lone.Load() + tr.pipelines.Load()
	t.Logf("%d commands: %d lone, %d in %d pipelines (%.1f per round trip)", cmds, tr.lone.Load(), tr.piped.Load(), tr.pipelines.Load(), float64(sent)/float64(roundTrips))
	// The first EVALSHA of the script fails NOSCRIPT and go-redis sends
	// EVAL after it: a few more commands than the callers issued.
	if sent < cmds || sent > cmds+workers+50 {
		t.Fatalf("%d commands reached the connection, want %d (+ EVAL after NOSCRIPT, HELLO per connection)", sent, cmds)
	}
	if roundTrips*4 > cmds {
		t.Fatalf("%d round trips for %d commands from %d concurrent callers: commands were not pipelined", roundTrips, cmds, workers)
	}
}

func TestAutoPipelineErrorsStayWithTheirCommand(t *testing.T) {
	srv := testenv.StartRedisServer(t, false)
	c, _, tr := autoClient(t, srv.Addr(), 1)
	ctx := context.Background()
	if err := c.Set(ctx, "str", "not a number", 0).Err(); err != nil {
		t.Fatal(err)
	}
	var okN, wrongN atomic.Int64
	var unexpected atomic.Value
	start(100, func(i int) {
		if i%2 == 0 {
			err := c.Incr(ctx, "str").Err()
			if err != nil && strings.Contains(err.Error(), "not an integer") {
				wrongN.Add(1)
				return
			}
			unexpected.CompareAndSwap(nil, fmt.Sprintf("incr on a string: %v", err))
			return
		}
		if err := c.Incr(ctx, "n").Err(); err != nil {
			unexpected.CompareAndSwap(nil, fmt.Sprintf("incr: %v", err))
			return
		}
		okN.Add(1)
	})
	if u := unexpected.Load(); u != nil {
		t.Fatal(u)
	}
	if n, err := c.Get(ctx, "n").Int(); err != nil || n != 50 || okN.Load() != 50 || wrongN.Load() != 50 {
		t.Fatalf("n=%d (%v), ok %d, refused %d: want 50, 50, 50", n, err, okN.Load(), wrongN.Load())
	}
	if tr.pipelines.Load() == 0 {
		t.Fatal("no pipeline formed: the test did not exercise errors inside a pipeline")
	}
}

func TestAutoPipelineCarriesAsynqEnqueues(t *testing.T) {
	srv := testenv.StartRedisServer(t, false)
	c, _, tr := autoClient(t, srv.Addr(), 2)
	client := asynq.NewClientFromRedisClient(c)
	ctx := context.Background()
	// Scripts not loaded yet: asynq's EVALSHA fails NOSCRIPT inside a
	// pipeline and is sent again as EVAL.
	const n = 300
	var conflicts, unexpected atomic.Int64
	var firstErr atomic.Value
	start(n, func(i int) {
		// Every task id twice: one of the two is refused.
		id := fmt.Sprintf("task-%d", i/2)
		_, err := client.EnqueueContext(ctx, asynq.NewTask("noop", []byte(id)), asynq.TaskID(id))
		switch {
		case errors.Is(err, asynq.ErrTaskIDConflict):
			conflicts.Add(1)
		case err != nil:
			unexpected.Add(1)
			firstErr.CompareAndSwap(nil, err.Error())
		}
	})
	if unexpected.Load() > 0 {
		t.Fatalf("%d enqueues failed; first: %v", unexpected.Load(), firstErr.Load())
	}
	if got, err := c.LLen(ctx, "asynq:{default}:pending").Result(); err != nil || got != n/2 || conflicts.Load() != n/2 {
		t.Fatalf("pending %d (%v), conflicts %d: want %d and %d", got, err, conflicts.Load(), n/2, n/2)
	}
	if tr.pipelines.Load() == 0 {
		t.Fatal("no enqueue was pipelined")
	}
}

func TestAutoPipelineCancelledContext(t *testing.T) {
	srv := testenv.StartRedisServer(t, false)
	c, _, _ := autoClient(t, srv.Addr(), 1)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := c.Incr(ctx, "n").Err(); !errors.Is(err, context.Canceled) {
		t.Fatalf("incr with a cancelled context: %v, want context.Canceled", err)
	}
	if n, err := c.Get(context.Background(), "n").Result(); !errors.Is(err, redis.Nil) {
		t.Fatalf("the cancelled INCR ran: n=%q (%v)", n, err)
	}
}

func TestAutoPipelineRedisDown(t *testing.T) {
	srv := testenv.StartRedisServer(t, false)
	c, _, tr := autoClient(t, srv.Addr(), 2)
	ctx := context.Background()
	if err := c.Ping(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	srv.Kill()
	testenv.Eventually(t, 10*time.Second, "redis-server gone", func() bool { return !srv.Running() })
	var failed atomic.Int64
	t0 := time.Now()
	start(50, func(int) {
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		if c.Incr(cctx, "n").Err() != nil {
			failed.Add(1)
		}
	})
	if failed.Load() != 50 {
		t.Fatalf("%d of 50 commands failed with Redis down", failed.Load())
	}
	if took := time.Since(t0); took > 5*time.Second {
		t.Fatalf("failing took %v", took)
	}
	srv.Start()
	before := tr.pipelines.Load() + tr.lone.Load()
	start(50, func(int) {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		if err := c.Incr(cctx, "n").Err(); err != nil {
			t.Errorf("incr after restart: %v", err)
		}
	})
	if n, err := c.Get(ctx, "n").Int(); err != nil || n != 50 {
		t.Fatalf("n=%d (%v) after restart, want 50", n, err)
	}
	if tr.pipelines.Load()+tr.lone.Load() == before {
		t.Fatal("nothing was sent after the restart")
	}
}

func TestAutoPipelineClosed(t *testing.T) {
	srv := testenv.StartRedisServer(t, false)
	c, a, tr := autoClient(t, srv.Addr(), 1)
	a.Close()
	start(20, func(int) {
		if err := c.Incr(context.Background(), "n").Err(); err != nil {
			t.Errorf("incr after Close: %v", err)
		}
	})
	if n, err := c.Get(context.Background(), "n").Int(); err != nil || n != 20 {
		t.Fatalf("n=%d (%v), want 20", n, err)
	}
	if tr.pipelines.Load() != 0 {
		t.Fatalf("%d pipelines after Close: commands should go one by one", tr.pipelines.Load())
	}
}
