// Package ratelimit shares per-vendor rate limits between every goroutine of
// every worker replica, through Redis (GCRA, github.com/go-redis/redis_rate):
// a burst of thousands of leads reaches a vendor at the rate it allows,
// however many workers run.
package ratelimit

import (
	"context"
	"fmt"
	"math"
	"time"

	"github.com/go-redis/redis_rate/v10"
	"github.com/redis/go-redis/v9"
)

// keyPrefix namespaces the limiter's keys in the queue Redis.
const keyPrefix = "cepjobs:ratelimit:"

// ErrThrottled is returned (wrapped in *Throttled) when the wait would be
// longer than the caller allows.
type Throttled struct {
	Key        string
	RetryAfter time.Duration
}

func (t *Throttled) Error() string {
	return fmt.Sprintf("rate limit %s: next slot in %s", t.Key, t.RetryAfter.Round(time.Millisecond))
}

// Limiter applies named per-second limits.
type Limiter struct {
	l      *redis_rate.Limiter
	limits map[string]redis_rate.Limit
}

// New returns a limiter with perSecond[name] requests per second for each
// name; a name without a positive rate is not limited.
func New(c redis.UniversalClient, perSecond map[string]float64) *Limiter {
	limits := map[string]redis_rate.Limit{}
	for name, r := range perSecond {
		if r <= 0 {
			continue
		}
		// redis_rate counts whole events per period: a per-minute rate keeps
		// fractional rates (0.5/s = 30/min) exact, and the emission interval
		// (period/rate) is the same 1/r seconds. Burst: one second's worth.
		limits[name] = redis_rate.Limit{
			Rate:   max(int(math.Round(r*60)), 1),
			Period: time.Minute,
			Burst:  max(int(math.Ceil(r)), 1),
		}
	}
	return &Limiter{l: redis_rate.NewLimiter(c), limits: limits}
}

// Wait takes one slot of name's limit, sleeping for it when the next slot
// comes within maxWait. Otherwise it returns a *Throttled saying when to come
// back, so the task can be re-scheduled instead of holding a worker.
func (l *Limiter) Wait(ctx context.Context, name string, maxWait time.Duration) error {
	lim, ok := l.limits[name]
	if !ok {
		return nil
	}
	deadline := time.Now().Add(maxWait)
	for {
		res, err := l.l.Allow(ctx, keyPrefix+name, lim)
		if err != nil {
			return fmt.Errorf("rate limit %s: %w", name, err)
		}
		if res.Allowed > 0 {
			return nil
		}
		wait := res.RetryAfter
		if time.Now().Add(wait).After(deadline) {
			return &Throttled{Key: name, RetryAfter: wait}
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
}
