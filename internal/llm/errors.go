package llm

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"

	openai "github.com/sashabaranov/go-openai"

	"github.com/cepcomunicacion/cepjobs/internal/vendor"
)

const (
	vendorName = "openai"
	opChat     = "chat completion"
)

// Codes of the errors the generator makes itself, set in vendor.Error.Code.
const (
	CodeInvalidRequest = "invalid_request"  // the job's input is invalid
	CodeInvalidAnswer  = "invalid_answer"   // answers broke the schema or limits MaxRepairs+1 times
	CodeContentFilter  = "content_filter"   // the endpoint's content filter withheld the answer
	CodeRefusal        = "refusal"          // the model declined to answer
	CodeLocalRateLimit = "local_rate_limit" // our own RPM/TPM limiter asked to come back later
)

// safeCode is what an error code or type looks like ("invalid_api_key",
// "rate_limit_exceeded", "tokens"); anything else is not shown.
var safeCode = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,64}$`)

// classify turns a failed CreateChatCompletion into a *vendor.Error. The
// endpoint's error message is never copied: OpenAI's 401 quotes part of
// the key, and other servers echo the prompt. Decisions are made on the
// status, the error code and type, and a few keywords; the message shown
// is our own.
//
// h is the answer's headers: go-openai (v1.43.0, client.go sendRequest)
// copies them into the returned response before it looks at the status,
// so they are there for a 429 without capturing them in a RoundTripper.
func classify(parent, call context.Context, err error, h http.Header, model string, now time.Time) *vendor.Error {
	var apiErr *openai.APIError
	var reqErr *openai.RequestError
	status, code, typ, param, text := 0, "", "", "", ""
	switch {
	case errors.As(err, &apiErr):
		status, typ, text = apiErr.HTTPStatusCode, apiErr.Type, strings.ToLower(apiErr.Message)
		if apiErr.Code != nil {
			code = fmt.Sprint(apiErr.Code)
		}
		if apiErr.Param != nil {
			param = *apiErr.Param
		}
	case errors.As(err, &reqErr):
		// A non-JSON error body (a proxy's HTML page): the status is
		// all there is.
		status = reqErr.HTTPStatusCode
	default:
		return transportError(parent, call, err)
	}
	if !safeCode.MatchString(code) {
		code = ""
	}
	if !safeCode.MatchString(typ) {
		typ = ""
	}
	e := &vendor.Error{
		Vendor: vendorName, Op: opChat, Status: status, Code: code,
		Permanent:  vendor.PermanentStatus(status),
		RetryAfter: retryAfter(h, typ, now),
		Throttled:  status == http.StatusTooManyRequests,
	}
	if e.Code == "" {
		e.Code = typ
	}
	switch {
	case status == http.StatusUnauthorized:
		e.Message = "API key rejected (OPENAI_API_KEY)"
	case status == http.StatusForbidden:
		e.Message = "API key not allowed to use this model or endpoint"
	case status == http.StatusNotFound:
		// The model name is ours (configuration), safe to show.
		e.Message = fmt.Sprintf("model %q not found, or OPENAI_BASE_URL is not an API root", model)
	case status == http.StatusTooManyRequests && (code == "insufficient_quota" || strings.Contains(text, "quota")):
		// OpenAI answers 429 when the account ran out of credit. Only a
		// person can fix that: fail now with a clear reason instead of
		// retrying for hours.
		e.Message, e.Permanent, e.Throttled, e.RetryAfter = "account quota or credit exhausted: check billing", true, false, 0
	case status == http.StatusTooManyRequests:
		e.Message = "rate limited by the endpoint"
		if typ == "requests" || typ == "tokens" {
			e.Message += " (" + typ + " per minute)"
		}
	case status < 500 && isContentPolicy(code, typ, text):
		e.Message, e.Code, e.Permanent = "request rejected by the endpoint's content policy", CodeContentFilter, true
	case status < 500 && (code == "context_length_exceeded" || strings.Contains(text, "context length") || strings.Contains(text, "maximum context")):
		e.Message = "prompt and max_tokens exceed the model's context window"
	case status == http.StatusBadRequest && (param == "response_format" || strings.Contains(text, "response_format") || strings.Contains(text, "json_schema")):
		e.Message = "response_format not accepted by this endpoint or model; set CEPJOBS_LLM_JSON_SCHEMA=false to ask for json_object"
	case status == http.StatusBadRequest && (param == "max_tokens" || param == "max_completion_tokens"):
		e.Message = "max_tokens not accepted for this model (" + param + ")"
	case e.Permanent:
		e.Message = "request rejected"
		if param != "" && safeCode.MatchString(param) {
			e.Message += " (parameter " + param + ")"
		}
	case status >= 500:
		e.Message = "endpoint error"
	default:
		e.Message = strings.ToLower(http.StatusText(status))
	}
	return e
}

func isContentPolicy(code, typ, text string) bool {
	for _, s := range []string{code, typ} {
		if strings.Contains(s, "content_policy") || strings.Contains(s, "content_filter") || s == "moderation_blocked" {
			return true
		}
	}
	return strings.Contains(text, "content management policy") || strings.Contains(text, "content policy")
}

// transportError is a call that got no answer. The underlying error is
// kept for errors.Is (context.Canceled) but not shown: it holds the URL.
func transportError(parent, call context.Context, err error) *vendor.Error {
	e := &vendor.Error{Vendor: vendorName, Op: opChat, Err: err}
	var ne net.Error
	switch {
	case errors.Is(parent.Err(), context.Canceled):
		e.Message = "cancelled"
	case errors.Is(parent.Err(), context.DeadlineExceeded):
		e.Message = "timed out (the job's deadline)"
	case errors.Is(call.Err(), context.DeadlineExceeded):
		e.Message = "timed out (CEPJOBS_LLM_CALL_TIMEOUT)"
	case errors.As(err, &ne) && ne.Timeout():
		e.Message = "timed out"
	default:
		var oe *net.OpError
		if errors.As(err, &oe) {
			e.Message = "network error: " + oe.Op
		} else {
			e.Message = "network error"
		}
	}
	return e
}

// retryAfter reads how long the endpoint asks us to wait: retry-after-ms
// (OpenAI's precise form, which its own SDKs read first), then
// Retry-After and the generic reset headers (vendor.RetryAfter), then
// OpenAI's x-ratelimit-reset-requests / -tokens, Go-style durations such
// as "1s", "6m0s" or "20ms". Of the last two, the one of the exhausted
// limit: the 429's error type says which ("requests", "tokens"), else the
// later one. Capped at an hour, like vendor.RetryAfter.
func retryAfter(h http.Header, typ string, now time.Time) time.Duration {
	if h == nil {
		return 0
	}
	if ms, err := strconv.ParseFloat(strings.TrimSpace(h.Get("retry-after-ms")), 64); err == nil && ms > 0 {
		return min(time.Duration(ms*float64(time.Millisecond)), time.Hour)
	}
	if d := vendor.RetryAfter(h, now); d > 0 {
		return d
	}
	reqs := resetDuration(h.Get("x-ratelimit-reset-requests"))
	toks := resetDuration(h.Get("x-ratelimit-reset-tokens"))
	var d time.Duration
	switch typ {
	case "requests":
		d = reqs
	case "tokens":
		d = toks
	}
	if d == 0 {
		d = max(reqs, toks)
	}
	return min(d, time.Hour)
}

// resetDuration parses an x-ratelimit-reset-* value: a Go-style duration
// ("6m0s", "20ms"), or plain seconds as some compatible servers send.
func resetDuration(v string) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if d, err := time.ParseDuration(v); err == nil && d > 0 {
		return d
	}
	if s, err := strconv.ParseFloat(v, 64); err == nil && s > 0 && s < 1e9 {
		return time.Duration(s * float64(time.Second))
	}
	return 0
}
