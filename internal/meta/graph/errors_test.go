package graph_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/cepcomunicacion/cepjobs/internal/meta/graph"
)

var now = time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC)

func answer(status int, h http.Header) *http.Response {
	if h == nil {
		h = http.Header{}
	}
	return &http.Response{StatusCode: status, Header: h}
}

func TestStatusErrorClassifies(t *testing.T) {
	t.Parallel()
	buc := http.Header{"X-Business-Use-Case-Usage": {`{"1234":[{"type":"ads_management","call_count":100,"total_cputime":20,"total_time":20,"estimated_time_to_regain_access":12}],"5678":[{"type":"custom_audience","call_count":5,"estimated_time_to_regain_access":3}]}`}}
	product := graph.Rules{131056: {Class: graph.Throttled, Reason: "pair rate limit", Wait: 6 * time.Second}}
	for _, tc := range []struct {
		name                 string
		status               int
		h                    http.Header
		body                 string
		permanent, throttled bool
		retryAfter           time.Duration
		code                 string
	}{
		{"invalid parameter", 400, nil, `{"error":{"type":"OAuthException","code":100,"error_subcode":2804003,"fbtrace_id":"AbC_1-x"}}`, true, false, 0, "100/2804003"},
		{"expired token", 401, nil, `{"error":{"type":"OAuthException","code":190,"error_subcode":463}}`, true, false, 0, "190/463"},
		{"permission range", 403, nil, `{"error":{"code":294}}`, true, false, 0, "294"},
		{"unknown is transient", 400, nil, `{"error":{"code":1}}`, false, false, 0, "1"},
		{"service", 503, nil, `{"error":{"code":2,"is_transient":true}}`, false, false, 0, "2"},
		{"is_transient wins over status", 400, nil, `{"error":{"code":9999,"is_transient":true}}`, false, false, 0, "9999"},
		{"is_transient as a string", 400, nil, `{"error":{"code":9999,"is_transient":"true"}}`, false, false, 0, "9999"},
		{"unknown code by status 400", 400, nil, `{"error":{"code":9999}}`, true, false, 0, "9999"},
		{"unknown code by status 500", 500, nil, `{"error":{"code":9999}}`, false, false, 0, "9999"},
		{"app throttle without usage", 400, nil, `{"error":{"code":4}}`, false, true, 0, "4"},
		{"BUC throttle with usage", 400, buc, `{"error":{"code":80004,"error_subcode":2446079}}`, false, true, 12 * time.Minute, "80004/2446079"},
		{"user throttle with Retry-After", 400, http.Header{"Retry-After": {"30"}}, `{"error":{"code":17}}`, false, true, 30 * time.Second, "17"},
		{"usage beats Retry-After", 400, http.Header{"Retry-After": {"30"}, "X-Business-Use-Case-Usage": buc["X-Business-Use-Case-Usage"]}, `{"error":{"code":613}}`, false, true, 12 * time.Minute, "613"},
		{"product throttle falls back to documented wait", 400, nil, `{"error":{"code":131056}}`, false, true, 6 * time.Second, "131056"},
		{"code as a string", 400, nil, `{"error":{"code":"80007"}}`, false, true, 0, "80007"},
		{"429 without body", 429, http.Header{"Retry-After": {"5"}}, ``, false, true, 5 * time.Second, ""},
		{"502 html", 502, nil, `<html>bad gateway</html>`, false, false, 0, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := graph.StatusError("meta", "send", answer(tc.status, tc.h), []byte(tc.body), now, product)
			if e.Permanent != tc.permanent || e.Throttled != tc.throttled || e.RetryAfter != tc.retryAfter || e.Code != tc.code {
				t.Errorf("got permanent=%v throttled=%v retryAfter=%s code=%q, want %v %v %s %q (%v)",
					e.Permanent, e.Throttled, e.RetryAfter, e.Code, tc.permanent, tc.throttled, tc.retryAfter, tc.code, e)
			}
			if e.Status != tc.status {
				t.Errorf("status: got %d, want %d", e.Status, tc.status)
			}
		})
	}
}

// Meta's message, error_user_msg and error_data.details may echo what we
// sent; none of it may reach our error text. The title is kept only when it
// looks clean.
func TestStatusErrorKeepsPersonalDataOut(t *testing.T) {
	t.Parallel()
	secrets := []string{"ana.garcia@example.com", "600111222", "+34 600 111 222", "García", "EAAGm0PX4ZCpsBAKZCsecrettoken"}
	for _, title := range []string{"Invalid email ana.garcia@example.com", "Phone 600 111 222 invalid", "EAAGm0PX4ZCpsBAKZCsecrettokenEAAGm0PX4ZCpsBAKZCsecrettoken"} {
		body := `{"error":{"message":"Invalid parameter: García, ana.garcia@example.com, +34 600 111 222, access_token=EAAGm0PX4ZCpsBAKZCsecrettoken",` +
			`"type":"OAuthException","code":100,"error_user_title":"` + title + `",` +
			`"error_user_msg":"The email ana.garcia@example.com of García is invalid",` +
			`"error_data":{"details":"to: +34 600 111 222"},"fbtrace_id":"A1b2C3"}}`
		e := graph.StatusError("meta", "send", answer(400, nil), []byte(body), now, nil)
		for _, s := range secrets {
			if strings.Contains(e.Error(), s) {
				t.Errorf("error text %q holds %q", e.Error(), s)
			}
		}
		if !strings.Contains(e.Error(), "fbtrace_id A1b2C3") || !strings.Contains(e.Error(), "invalid parameter") {
			t.Errorf("error text %q: want our reason and the trace id", e.Error())
		}
	}
	e := graph.StatusError("meta", "send", answer(400, nil), []byte(`{"error":{"code":100,"error_user_title":"Event Timestamp Too Old"}}`), now, nil)
	if !strings.Contains(e.Error(), "Event Timestamp Too Old") {
		t.Errorf("error text %q: want the clean title", e.Error())
	}
}

func TestRegainAccess(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		v    string
		want time.Duration
	}{
		{`{"1":[{"estimated_time_to_regain_access":0}]}`, 0},
		{`{"1":[{"estimated_time_to_regain_access":2},{"estimated_time_to_regain_access":9}]}`, 9 * time.Minute},
		{`{"1":[{"estimated_time_to_regain_access":600}]}`, time.Hour},
		{`not json`, 0},
		{``, 0},
	} {
		h := http.Header{}
		if tc.v != "" {
			h.Set("X-Business-Use-Case-Usage", tc.v)
		}
		if got := graph.RegainAccess(h); got != tc.want {
			t.Errorf("RegainAccess(%s): got %s, want %s", tc.v, got, tc.want)
		}
	}
}

func TestChecks(t *testing.T) {
	t.Parallel()
	if got := graph.URL("https://graph.facebook.com/", "v26.0", "123", "events"); got != "https://graph.facebook.com/v26.0/123/events" {
		t.Errorf("URL: got %s", got)
	}
	for _, v := range []string{"v26.0", "v21.0"} {
		if err := graph.CheckVersion("X", v); err != nil {
			t.Errorf("CheckVersion(%s): %v", v, err)
		}
	}
	for _, v := range []string{"26.0", "v26", "latest", ""} {
		if err := graph.CheckVersion("X", v); err == nil || !strings.HasPrefix(err.Error(), "X: ") {
			t.Errorf("CheckVersion(%q): got %v, want an error starting with the name", v, err)
		}
	}
	for _, v := range []string{"ftp://graph.facebook.com", "graph.facebook.com", "https://graph.facebook.com?access_token=x"} {
		if err := graph.CheckBaseURL("X", v); err == nil {
			t.Errorf("CheckBaseURL(%q): got nil, want an error", v)
		}
	}
	if err := graph.CheckID("X", "12a"); err == nil {
		t.Error("CheckID(12a): got nil, want an error")
	}
}
