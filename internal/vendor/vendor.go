// Package vendor is the HTTP kit every vendor client (Mailchimp, Mailchimp
// Transactional, Meta, WhatsApp, OpenAI) shares: sending a request with a
// bounded body read, and classifying the outcome once, in one place, as
// permanent (the same call can never succeed: a bad request, a bad key) or
// transient (retry later, after Retry-After when the vendor says so).
package vendor

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Error is a failed vendor call, classified. Its text never holds personal
// data or secrets: vendors echo request fields in error bodies, so clients
// put only error names and short reasons in Message.
type Error struct {
	Vendor string // "mailchimp", "meta", …
	Op     string // what was attempted, e.g. "upsert member"
	Status int    // HTTP status; 0 when no answer came
	Code   string // the vendor's error name, when it has one
	// Message is a short, safe reason.
	Message string
	// Permanent: retrying the same call cannot succeed.
	Permanent bool
	// RetryAfter is the vendor's requested wait (Retry-After or a
	// rate-limit reset header); 0 when it named none.
	RetryAfter time.Duration
	// Throttled: the vendor (or our own limiter) asked us to slow down. A
	// throttled attempt is not a failure of the task.
	Throttled bool
	Err       error
}

func (e *Error) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s: ", e.Vendor, e.Op)
	switch {
	case e.Status != 0:
		fmt.Fprintf(&b, "HTTP %d", e.Status)
		if e.Code != "" {
			fmt.Fprintf(&b, " %s", e.Code)
		}
	case e.Code != "":
		b.WriteString(e.Code) // a non-HTTP protocol's reply code (SMTP)
	default:
		b.WriteString("no answer")
	}
	if e.Message != "" {
		fmt.Fprintf(&b, ": %s", e.Message)
	}
	if e.Permanent {
		b.WriteString(" (permanent)")
	} else if e.RetryAfter > 0 {
		fmt.Fprintf(&b, " (retry after %s)", e.RetryAfter.Round(time.Second))
	}
	return b.String()
}

func (e *Error) Unwrap() error { return e.Err }

// IsPermanent reports whether err is a vendor error that retrying cannot fix.
func IsPermanent(err error) bool {
	var ve *Error
	return errors.As(err, &ve) && ve.Permanent
}

// RetryAfterOf returns the wait a vendor asked for, if any.
func RetryAfterOf(err error) (time.Duration, bool) {
	var ve *Error
	if errors.As(err, &ve) && ve.RetryAfter > 0 {
		return ve.RetryAfter, true
	}
	return 0, false
}

// IsThrottled reports whether err only says "slow down".
func IsThrottled(err error) bool {
	var ve *Error
	return errors.As(err, &ve) && ve.Throttled
}

// PermanentStatus is the classification by HTTP status alone: 4xx other than
// 408 (timeout) and 429 (rate limit) means the request itself is wrong.
func PermanentStatus(status int) bool {
	return status >= 400 && status < 500 && status != http.StatusRequestTimeout && status != http.StatusTooManyRequests
}

// MaxBody bounds what a client reads of an answer.
const MaxBody = 1 << 20

// Do sends req and reads the answer's body (up to MaxBody). A transport
// failure (refused, reset, timeout) comes back as a transient *Error; any
// HTTP answer, whatever its status, comes back as resp and body for the
// client to classify with its vendor's rules (see StatusError).
func Do(client *http.Client, req *http.Request, vendorName, op string) (*http.Response, []byte, error) {
	resp, err := client.Do(req)
	if err != nil {
		return nil, nil, &Error{Vendor: vendorName, Op: op, Message: transportReason(req.Context(), err), Err: err}
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, MaxBody))
	if err != nil {
		return nil, nil, &Error{Vendor: vendorName, Op: op, Message: "reading the answer failed", Err: err}
	}
	return resp, body, nil
}

// transportReason says why no answer came, without echoing the URL (some
// vendors take credentials in the query string).
func transportReason(ctx context.Context, err error) string {
	var ne net.Error
	switch {
	case ctx.Err() == context.DeadlineExceeded:
		return "timed out"
	case ctx.Err() == context.Canceled:
		return "cancelled"
	case errors.As(err, &ne) && ne.Timeout():
		return "timed out"
	}
	var oe *net.OpError
	if errors.As(err, &oe) {
		return "network error: " + oe.Op + " " + errString(oe.Err)
	}
	return "network error"
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// StatusError classifies a non-2xx answer by its status and headers. code and
// message come from the vendor's error body, parsed by the client, and must
// be free of personal data.
func StatusError(vendorName, op string, resp *http.Response, code, message string, now time.Time) *Error {
	e := &Error{
		Vendor: vendorName, Op: op, Status: resp.StatusCode, Code: code, Message: message,
		Permanent:  PermanentStatus(resp.StatusCode),
		RetryAfter: RetryAfter(resp.Header, now),
		Throttled:  resp.StatusCode == http.StatusTooManyRequests,
	}
	return e
}

// RetryAfter reads how long a vendor asks us to wait: Retry-After in seconds
// or as an HTTP date, else the common rate-limit reset headers. Zero when it
// says nothing usable. Capped at one hour.
func RetryAfter(h http.Header, now time.Time) time.Duration {
	var d time.Duration
	if v := strings.TrimSpace(h.Get("Retry-After")); v != "" {
		if s, err := strconv.Atoi(v); err == nil {
			d = time.Duration(s) * time.Second
		} else if t, err := http.ParseTime(v); err == nil {
			d = t.Sub(now)
		}
	}
	if d <= 0 {
		for _, k := range []string{"X-RateLimit-Reset-After", "RateLimit-Reset", "X-RateLimit-Reset"} {
			v := strings.TrimSpace(h.Get(k))
			if v == "" {
				continue
			}
			if f, err := strconv.ParseFloat(v, 64); err == nil {
				if f > 1e9 { // an epoch timestamp, not a delta
					d = time.Unix(int64(f), 0).Sub(now)
				} else {
					d = time.Duration(f * float64(time.Second))
				}
				break
			}
		}
	}
	if d < 0 {
		return 0
	}
	return min(d, time.Hour)
}

// Permanentf makes a permanent error for a reason found outside HTTP status
// (an answer that says the recipient is rejected, a missing field).
func Permanentf(vendorName, op, format string, args ...any) *Error {
	return &Error{Vendor: vendorName, Op: op, Message: fmt.Sprintf(format, args...), Permanent: true}
}

// Transientf makes a transient error (an answer that cannot be parsed, a
// vendor-side hiccup named in a 2xx body).
func Transientf(vendorName, op, format string, args ...any) *Error {
	return &Error{Vendor: vendorName, Op: op, Message: fmt.Sprintf(format, args...)}
}

// NewHTTPClient returns the client vendor calls use: a per-call timeout and
// no redirects to other hosts (a redirect would carry our Authorization).
func NewHTTPClient(timeout time.Duration) *http.Client {
	return &http.Client{
		Timeout: timeout,
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if len(via) > 0 && req.URL.Host != via[0].URL.Host {
				return http.ErrUseLastResponse
			}
			if len(via) >= 3 {
				return http.ErrUseLastResponse
			}
			return nil
		},
	}
}
