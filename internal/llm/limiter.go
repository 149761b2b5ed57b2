package llm

import (
	"context"
	"fmt"
	"time"

	"golang.org/x/time/rate"

	"github.com/cepcomunicacion/cepjobs/internal/vendor"
)

// limiter keeps this process under CEPJOBS_LLM_RPM and CEPJOBS_LLM_TPM,
// shared by every goroutine of a Generator. It is in-process: each worker
// replica gets the whole rate, so set them to the account's limits
// divided by the replicas.
type limiter struct {
	rpm, tpm *rate.Limiter
	// maxWait is the longest a call waits in process for a slot; a
	// longer wait comes back as a throttled error, so the job is
	// re-scheduled instead of holding a worker.
	maxWait time.Duration
}

func newLimiter(rpm, tpm int, maxWait time.Duration) *limiter {
	return &limiter{
		// A second's worth of requests may go at once, so a burst of
		// jobs is spread over the minute instead of hitting the
		// endpoint together.
		rpm: rate.NewLimiter(rate.Limit(float64(rpm)/60), max(rpm/60, 1)),
		// A minute's worth of tokens: the bucket must hold a whole
		// call's reservation, and OpenAI meters tokens per minute.
		tpm:     rate.NewLimiter(rate.Limit(float64(tpm)/60), tpm),
		maxWait: maxWait,
	}
}

// wait takes one request and tokens from the limits, sleeping until both
// allow it. tokens is what a call may use at most (its estimated prompt
// plus max_tokens): usage is known only after the answer, so the
// reservation is the bound, never corrected afterwards.
func (l *limiter) wait(ctx context.Context, tokens int) error {
	now := time.Now()
	tokens = min(max(tokens, 1), l.tpm.Burst())
	r := l.rpm.ReserveN(now, 1)
	t := l.tpm.ReserveN(now, tokens)
	rd, td := r.DelayFrom(now), t.DelayFrom(now)
	delay := max(rd, td)
	if delay == 0 {
		return nil
	}
	limit := l.maxWait
	if dl, ok := ctx.Deadline(); ok {
		limit = min(limit, dl.Sub(now))
	}
	if delay > limit {
		r.CancelAt(now)
		t.CancelAt(now)
		which := "CEPJOBS_LLM_RPM"
		if td > rd {
			which = "CEPJOBS_LLM_TPM"
		}
		return &vendor.Error{
			Vendor: vendorName, Op: opChat, Code: CodeLocalRateLimit,
			Message:    fmt.Sprintf("%s reached: next slot in %s", which, delay.Round(time.Millisecond)),
			Throttled:  true,
			RetryAfter: delay,
		}
	}
	timer := time.NewTimer(delay)
	defer timer.Stop()
	select {
	case <-timer.C:
		return nil
	case <-ctx.Done():
		// Give the slots back to the calls still waiting.
		r.Cancel()
		t.Cancel()
		return &vendor.Error{Vendor: vendorName, Op: opChat, Message: "cancelled while waiting for the rate limit", Err: ctx.Err()}
	}
}
