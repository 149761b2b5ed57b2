package llm

import (
	"net/http"
	"testing"
	"time"
)

func TestRetryAfter(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name string
		h    http.Header
		typ  string
		want time.Duration
	}{
		{"nothing", http.Header{}, "", 0},
		{"Retry-After seconds", http.Header{"Retry-After": {"20"}}, "", 20 * time.Second},
		{"Retry-After date", http.Header{"Retry-After": {now.Add(90 * time.Second).Format(http.TimeFormat)}}, "", 90 * time.Second},
		{"retry-after-ms first", http.Header{"Retry-After-Ms": {"1500"}, "Retry-After": {"2"}}, "", 1500 * time.Millisecond},
		{"OpenAI reset, requests", http.Header{"X-Ratelimit-Reset-Requests": {"6m0s"}, "X-Ratelimit-Reset-Tokens": {"20ms"}}, "requests", 6 * time.Minute},
		{"OpenAI reset, tokens", http.Header{"X-Ratelimit-Reset-Requests": {"6m0s"}, "X-Ratelimit-Reset-Tokens": {"20ms"}}, "tokens", 20 * time.Millisecond},
		{"OpenAI reset, unknown type takes the later", http.Header{"X-Ratelimit-Reset-Requests": {"1s"}, "X-Ratelimit-Reset-Tokens": {"1m30s"}}, "", 90 * time.Second},
		{"reset in plain seconds", http.Header{"X-Ratelimit-Reset-Requests": {"2"}}, "", 2 * time.Second},
		{"garbage", http.Header{"X-Ratelimit-Reset-Requests": {"soon"}, "Retry-After": {"later"}}, "", 0},
		{"capped", http.Header{"Retry-After": {"86400"}}, "", time.Hour},
	} {
		if got := retryAfter(tc.h, tc.typ, now); got != tc.want {
			t.Errorf("%s: got %s, want %s", tc.name, got, tc.want)
		}
	}
}

func TestUsesMaxCompletionTokens(t *testing.T) {
	t.Parallel()
	for model, want := range map[string]bool{
		"o1": true, "o3-mini": true, "o4-mini-2025-04-16": true, "gpt-5": true, "gpt-5.1": true, "gpt-5-chat-latest": true,
		"gpt-4o-mini": false, "gpt-4.1": false, "claude-sonnet-4-5": false, "llama3.1:8b": false, "olmo-2": false,
	} {
		if got := usesMaxCompletionTokens(model); got != want {
			t.Errorf("usesMaxCompletionTokens(%q): got %v, want %v", model, got, want)
		}
	}
}

func TestExtractJSON(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		`{"a":1}`:                       `{"a":1}`,
		"```json\n{\"a\":1}\n```":       `{"a":1}`,
		"Aquí tienes:\n{\"a\":1}\nFin.": `{"a":1}`,
		"no json":                       "no json",
	} {
		if got := string(extractJSON(in)); got != want {
			t.Errorf("extractJSON(%q): got %q, want %q", in, got, want)
		}
	}
}
