package ratelimit_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cepcomunicacion/cepjobs/internal/ratelimit"
	"github.com/cepcomunicacion/cepjobs/internal/redisconn"
	"github.com/cepcomunicacion/cepjobs/internal/testenv"
)

// Two limiters (as two worker processes would have) share one limit through
// Redis: together they never exceed it.
func TestSharedLimit(t *testing.T) {
	opt, err := redisconn.Parse(testenv.RedisURL(t, testenv.RedisDBRateLim))
	if err != nil {
		t.Fatal(err)
	}
	const rate = 20.0
	var allowed atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	window := 1500 * time.Millisecond
	for range 2 {
		c := redisconn.Client(opt)
		defer c.Close()
		l := ratelimit.New(c, map[string]float64{"vendor": rate})
		for range 8 {
			wg.Go(func() {
				for time.Since(start) < window {
					err := l.Wait(context.Background(), "vendor", 0)
					var th *ratelimit.Throttled
					switch {
					case err == nil:
						allowed.Add(1)
					case errors.As(err, &th):
						if th.RetryAfter <= 0 || th.RetryAfter > time.Second {
							t.Errorf("retry after: got %s", th.RetryAfter)
							return
						}
						time.Sleep(th.RetryAfter)
					default:
						t.Error(err)
						return
					}
				}
			})
		}
	}
	wg.Wait()
	elapsed := time.Since(start).Seconds()
	// Burst (20) plus rate × elapsed is the most GCRA lets through.
	maxAllowed := int64(rate) + int64(rate*elapsed) + 1
	if got := allowed.Load(); got > maxAllowed || got < int64(rate*elapsed*0.7) {
		t.Errorf("allowed %d calls in %.2fs across two limiters, want about %.0f (at most %d)", got, elapsed, rate*elapsed, maxAllowed)
	}
}

func TestWaitSleepsWithinBudgetAndUnlimitedNames(t *testing.T) {
	opt, _ := redisconn.Parse(testenv.RedisURL(t, testenv.RedisDBRateLim))
	c := redisconn.Client(opt)
	defer c.Close()
	l := ratelimit.New(c, map[string]float64{"slow": 2, "off": 0})
	ctx := context.Background()
	for range 2 { // the burst: one second's worth
		if err := l.Wait(ctx, "slow", 0); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Wait(ctx, "slow", 0); err == nil {
		t.Error("second call without budget: got nil, want throttled")
	}
	t0 := time.Now()
	if err := l.Wait(ctx, "slow", 2*time.Second); err != nil {
		t.Errorf("with a budget: %v", err)
	}
	if d := time.Since(t0); d < 100*time.Millisecond {
		t.Errorf("waited %s, want about half a second", d)
	}
	for range 100 {
		if err := l.Wait(ctx, "off", 0); err != nil {
			t.Fatalf("unlimited name: %v", err)
		}
	}
}
