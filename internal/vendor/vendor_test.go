package vendor_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/cepcomunicacion/cepjobs/internal/vendor"
)

func TestPermanentStatus(t *testing.T) {
	for status, want := range map[int]bool{400: true, 401: true, 403: true, 404: true, 422: true, 408: false, 429: false, 500: false, 502: false, 503: false} {
		if got := vendor.PermanentStatus(status); got != want {
			t.Errorf("PermanentStatus(%d): got %v, want %v", status, got, want)
		}
	}
}

func TestRetryAfter(t *testing.T) {
	now := time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		h    http.Header
		want time.Duration
	}{
		{http.Header{"Retry-After": {"7"}}, 7 * time.Second},
		{http.Header{"Retry-After": {now.Add(90 * time.Second).Format(http.TimeFormat)}}, 90 * time.Second},
		{http.Header{"X-Ratelimit-Reset": {"2.5"}}, 2500 * time.Millisecond},
		{http.Header{"X-Ratelimit-Reset": {"1795860060"}}, time.Unix(1795860060, 0).Sub(now)},
		{http.Header{"Retry-After": {"soon"}}, 0},
		{http.Header{"Retry-After": {"999999"}}, time.Hour},
		{http.Header{}, 0},
	} {
		if got := vendor.RetryAfter(tc.h, now); got != tc.want {
			t.Errorf("RetryAfter(%v): got %s, want %s", tc.h, got, tc.want)
		}
	}
}

func TestDoClassifiesTransportFailures(t *testing.T) {
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-time.After(2 * time.Second):
		case <-r.Context().Done():
		}
	}))
	defer slow.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", slow.URL+"/?key=secret-in-query", nil)
	_, _, err := vendor.Do(slow.Client(), req, "acme", "fetch")
	var ve *vendor.Error
	if !errors.As(err, &ve) || ve.Permanent || ve.Status != 0 || !strings.Contains(ve.Error(), "timed out") {
		t.Fatalf("timeout: got %v, want a transient timed-out vendor error", err)
	}
	if strings.Contains(ve.Error(), "secret-in-query") {
		t.Errorf("error text shows the URL: %v", ve)
	}

	closed := httptest.NewServer(http.NotFoundHandler())
	closed.Close()
	req, _ = http.NewRequest("GET", closed.URL, nil)
	if _, _, err := vendor.Do(http.DefaultClient, req, "acme", "fetch"); vendor.IsPermanent(err) || err == nil {
		t.Errorf("refused: got %v, want a transient error", err)
	}
}

func TestStatusError(t *testing.T) {
	now := time.Now()
	resp := &http.Response{StatusCode: 429, Header: http.Header{"Retry-After": {"3"}}}
	e := vendor.StatusError("acme", "send", resp, "rate_limited", "slow down", now)
	if e.Permanent || !e.Throttled || e.RetryAfter != 3*time.Second {
		t.Errorf("429: got %+v", e)
	}
	if d, ok := vendor.RetryAfterOf(e); !ok || d != 3*time.Second {
		t.Errorf("RetryAfterOf: got %s %v", d, ok)
	}
	e = vendor.StatusError("acme", "send", &http.Response{StatusCode: 400, Header: http.Header{}}, "bad", "", now)
	if !e.Permanent || !vendor.IsPermanent(e) {
		t.Errorf("400: got %+v, want permanent", e)
	}
}
