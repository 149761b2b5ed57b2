package handlers

import (
	"context"
	"errors"
	"math/rand/v2"
	"time"

	"github.com/hibiken/asynq"

	"github.com/cepcomunicacion/cepjobs/internal/ratelimit"
	"github.com/cepcomunicacion/cepjobs/internal/vendor"
)

// RetryDelay is every worker's asynq RetryDelayFunc: the wait a vendor (or
// our own rate limiter) asked for when it named one, else exponential
// backoff from 2 s, doubling per retry, capped at one hour, with jitter so a
// burst of failures does not come back in step.
func RetryDelay(n int, err error, _ *asynq.Task) time.Duration {
	if errors.Is(err, asynq.ErrLeaseExpired) {
		// The worker running it died: nothing is wrong with the task, and
		// the recoverer already waited for the lease to expire.
		return 0
	}
	if d, ok := waitFor(err); ok {
		// A little jitter on top, so throttled tasks don't all return at
		// the same instant and trip the limit again.
		return d + rand.N(d/10+time.Millisecond)
	}
	base := 2 * time.Second << min(n, 11)
	base = min(base, time.Hour)
	return base/2 + rand.N(base/2+1)
}

// IsFailure tells asynq which errors count against MaxRetry: being throttled
// (by the vendor or by our shared limiter) is not a failure of the task.
func IsFailure(err error) bool {
	return !IsThrottled(err)
}

// IsThrottled reports whether err only says "slow down".
func IsThrottled(err error) bool {
	var th *ratelimit.Throttled
	return errors.As(err, &th) || vendor.IsThrottled(err)
}

func waitFor(err error) (time.Duration, bool) {
	var th *ratelimit.Throttled
	if errors.As(err, &th) && th.RetryAfter > 0 {
		return th.RetryAfter, true
	}
	return vendor.RetryAfterOf(err)
}

// finalAttempt reports whether a failing attempt is the task's last: its
// failure will archive the task, so the delivery must be recorded as failed
// rather than left pending forever. Outside an asynq server (no retry
// metadata in ctx) no attempt is the last.
func finalAttempt(ctx context.Context, err error) (bool, int) {
	retried, ok1 := asynq.GetRetryCount(ctx)
	maxRetry, ok2 := asynq.GetMaxRetry(ctx)
	return ok1 && ok2 && retried >= maxRetry && IsFailure(err), retried
}
