// Package llmtest runs a stand-in for an OpenAI-compatible chat completions
// endpoint on loopback, for tests. It checks each request the way OpenAI's
// API reference documents POST /v1/chat/completions (bearer key, JSON body,
// model, message roles, response_format, max_tokens), answers with the
// documented chat.completion object including usage, records what it got,
// and can be told what to answer next: content, a finish_reason, an error
// status with headers, or a delay.
package llmtest

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// Reply is one scripted answer.
type Reply struct {
	// Content is the assistant message's content.
	Content string
	// FinishReason defaults to "stop".
	FinishReason string
	// Refusal, when set, answers a Structured Outputs refusal (content
	// null).
	Refusal string
	// Model is the answering model; default: the request's model with a
	// snapshot date, as OpenAI answers.
	Model string
	// PromptTokens and CompletionTokens are the usage reported; zero
	// means counted as one token per three bytes, more than real
	// tokenizers count for Latin text.
	PromptTokens, CompletionTokens int
	// Status, when not 0 or 200, answers an error with Body (default: an
	// OpenAI error document for the status) and Header.
	Status int
	Body   string
	Header http.Header
	// Delay holds the answer back, or until the client goes away.
	Delay time.Duration
}

// Message is one chat message as sent.
type Message struct {
	Role    string `json:"role"`
	Content string `json:"content"`
}

// ResponseFormat is the request's response_format.
type ResponseFormat struct {
	Type       string `json:"type"`
	JSONSchema *struct {
		Name   string          `json:"name"`
		Strict bool            `json:"strict"`
		Schema json.RawMessage `json:"schema"`
	} `json:"json_schema"`
}

// ChatRequest is the part of a request body the server checks and keeps.
type ChatRequest struct {
	Model               string          `json:"model"`
	Messages            []Message       `json:"messages"`
	MaxTokens           int             `json:"max_tokens"`
	MaxCompletionTokens int             `json:"max_completion_tokens"`
	ResponseFormat      *ResponseFormat `json:"response_format"`
	Stream              bool            `json:"stream"`
}

// Request is one request received.
type Request struct {
	At     time.Time
	Header http.Header
	Body   ChatRequest
}

// Server is the fake endpoint.
type Server struct {
	*httptest.Server
	t        testing.TB
	key      string
	mu       sync.Mutex
	replies  []Reply
	fallback *Reply
	requests []Request
	arrived  chan struct{}
}

// New starts a server that accepts key as its API key. It stops when the
// test ends.
func New(t testing.TB, key string) *Server {
	s := &Server{t: t, key: key, arrived: make(chan struct{}, 1000)}
	s.Server = httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(s.Close)
	return s
}

// BaseURL is the API root to configure (OPENAI_BASE_URL).
func (s *Server) BaseURL() string { return s.URL + "/v1" }

// Enqueue adds answers, used in order, one per request.
func (s *Server) Enqueue(r ...Reply) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.replies = append(s.replies, r...)
}

// Always sets the answer used once the queue is empty. Without one, an
// unscripted request fails the test.
func (s *Server) Always(r Reply) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fallback = &r
}

// Requests returns the requests received so far, valid or not.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Request(nil), s.requests...)
}

// Arrived receives once per request, when it arrives: tests wait on it
// instead of sleeping.
func (s *Server) Arrived() <-chan struct{} { return s.arrived }

// ErrorBody is an OpenAI error document.
func ErrorBody(message, typ, code string) string {
	b, _ := json.Marshal(map[string]any{"error": map[string]any{
		"message": message, "type": typ, "param": nil, "code": nilIfEmpty(code),
	}})
	return string(b)
}

func nilIfEmpty(s string) any {
	if s == "" {
		return nil
	}
	return s
}

var schemaName = regexp.MustCompile(`^[a-zA-Z0-9_-]{1,64}$`)

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	raw, _ := io.ReadAll(r.Body)
	var body ChatRequest
	jsonErr := json.Unmarshal(raw, &body)
	s.mu.Lock()
	s.requests = append(s.requests, Request{At: time.Now(), Header: r.Header.Clone(), Body: body})
	s.mu.Unlock()
	select {
	case s.arrived <- struct{}{}:
	default:
	}

	if r.Method != http.MethodPost || r.URL.Path != "/v1/chat/completions" {
		s.t.Errorf("llmtest: got %s %s, want POST /v1/chat/completions", r.Method, r.URL.Path)
		writeError(w, http.StatusNotFound, ErrorBody("Unknown request URL", "invalid_request_error", "unknown_url"), nil)
		return
	}
	if r.Header.Get("Authorization") != "Bearer "+s.key {
		// OpenAI quotes part of the key it got: clients must not pass
		// this message on.
		got := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
		writeError(w, http.StatusUnauthorized, ErrorBody("Incorrect API key provided: "+mask(got)+". You can find your API key at https://platform.openai.com/account/api-keys.", "invalid_request_error", "invalid_api_key"), nil)
		return
	}
	if problem := check(r, body, jsonErr); problem != "" {
		s.t.Errorf("llmtest: request not as documented: %s", problem)
		writeError(w, http.StatusBadRequest, ErrorBody(problem, "invalid_request_error", ""), nil)
		return
	}

	reply, ok := s.next()
	if !ok {
		s.t.Errorf("llmtest: request %d has no scripted answer", len(s.Requests()))
		writeError(w, http.StatusInternalServerError, ErrorBody("no scripted answer", "server_error", ""), nil)
		return
	}
	if reply.Delay > 0 {
		timer := time.NewTimer(reply.Delay)
		defer timer.Stop()
		select {
		case <-timer.C:
		case <-r.Context().Done():
			return
		}
	}
	if reply.Status != 0 && reply.Status != http.StatusOK {
		b := reply.Body
		if b == "" {
			b = ErrorBody(http.StatusText(reply.Status), "server_error", "")
		}
		writeError(w, reply.Status, b, reply.Header)
		return
	}
	s.complete(w, body, reply)
}

func (s *Server) next() (Reply, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.replies) > 0 {
		r := s.replies[0]
		s.replies = s.replies[1:]
		return r, true
	}
	if s.fallback != nil {
		return *s.fallback, true
	}
	return Reply{}, false
}

// check returns what is wrong with a request, per the API reference.
func check(r *http.Request, body ChatRequest, jsonErr error) string {
	switch {
	case !strings.HasPrefix(r.Header.Get("Content-Type"), "application/json"):
		return "Content-Type is not application/json"
	case jsonErr != nil:
		return "body is not JSON: " + jsonErr.Error()
	case body.Model == "":
		return "model is required"
	case len(body.Messages) == 0:
		return "messages must not be empty"
	case body.Stream:
		return "stream is not expected"
	case body.MaxTokens > 0 && body.MaxCompletionTokens > 0:
		return "max_tokens and max_completion_tokens are both set"
	case body.MaxTokens < 0 || body.MaxCompletionTokens < 0:
		return "negative token limit"
	}
	sawJSON := false
	for i, m := range body.Messages {
		switch m.Role {
		case "system", "developer", "user", "assistant":
		default:
			return fmt.Sprintf("messages[%d].role %q is not a chat role", i, m.Role)
		}
		if m.Content == "" {
			return fmt.Sprintf("messages[%d].content is empty", i)
		}
		sawJSON = sawJSON || strings.Contains(strings.ToLower(m.Content), "json")
	}
	if f := body.ResponseFormat; f != nil {
		switch f.Type {
		case "text":
		case "json_object":
			// Documented: json_object requires "JSON" somewhere in
			// the messages.
			if !sawJSON {
				return "'messages' must contain the word 'json' in some form, to use 'response_format' of type 'json_object'"
			}
		case "json_schema":
			if f.JSONSchema == nil || !schemaName.MatchString(f.JSONSchema.Name) {
				return "response_format.json_schema.name must match ^[a-zA-Z0-9_-]{1,64}$"
			}
			if f.JSONSchema.Strict {
				if p := strictProblem("schema", f.JSONSchema.Schema); p != "" {
					return "Invalid schema for response_format '" + f.JSONSchema.Name + "': " + p
				}
			}
		default:
			return fmt.Sprintf("response_format.type %q is not one of text, json_object, json_schema", f.Type)
		}
	}
	return ""
}

// strictProblem applies the Structured Outputs rules for strict schemas:
// every object sets additionalProperties false and requires every
// property; the keywords OpenAI rejects in strict mode are absent.
func strictProblem(path string, raw json.RawMessage) string {
	var node map[string]json.RawMessage
	if err := json.Unmarshal(raw, &node); err != nil {
		return path + " is not an object"
	}
	for _, k := range []string{"minLength", "maxLength", "minProperties", "maxProperties", "patternProperties"} {
		if _, ok := node[k]; ok {
			return fmt.Sprintf("%s: keyword %q is not permitted", path, k)
		}
	}
	var typ string
	_ = json.Unmarshal(node["type"], &typ)
	switch typ {
	case "object":
		var props map[string]json.RawMessage
		var req []string
		var extra any
		_ = json.Unmarshal(node["properties"], &props)
		_ = json.Unmarshal(node["required"], &req)
		_ = json.Unmarshal(node["additionalProperties"], &extra)
		if extra != false {
			return path + ": 'additionalProperties' is required to be supplied and to be false"
		}
		for name, p := range props {
			found := false
			for _, r := range req {
				found = found || r == name
			}
			if !found {
				return fmt.Sprintf("%s: 'required' is required to include every key in properties; missing %q", path, name)
			}
			if prob := strictProblem(path+".properties."+name, p); prob != "" {
				return prob
			}
		}
	case "array":
		if items, ok := node["items"]; ok {
			return strictProblem(path+".items", items)
		}
	}
	return ""
}

// complete answers the documented chat.completion object.
func (s *Server) complete(w http.ResponseWriter, body ChatRequest, r Reply) {
	model := r.Model
	if model == "" {
		model = body.Model + "-2024-07-18"
	}
	finish := r.FinishReason
	if finish == "" {
		finish = "stop"
	}
	prompt := r.PromptTokens
	if prompt == 0 {
		for _, m := range body.Messages {
			prompt += 4 + (len(m.Content)+2)/3
		}
		if f := body.ResponseFormat; f != nil && f.JSONSchema != nil {
			prompt += (len(f.JSONSchema.Schema) + 2) / 3
		}
	}
	completion := r.CompletionTokens
	if completion == 0 {
		completion = (len(r.Content)+len(r.Refusal)+2)/3 + 1
	}
	var content, refusal any = r.Content, nil
	if r.Refusal != "" {
		content, refusal = nil, r.Refusal
	}
	resp := map[string]any{
		"id":      "chatcmpl-llmtest",
		"object":  "chat.completion",
		"created": time.Now().Unix(),
		"model":   model,
		"choices": []any{map[string]any{
			"index":         0,
			"message":       map[string]any{"role": "assistant", "content": content, "refusal": refusal},
			"logprobs":      nil,
			"finish_reason": finish,
		}},
		"usage": map[string]any{
			"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion,
		},
		"system_fingerprint": "fp_llmtest",
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("x-ratelimit-limit-requests", "10000")
	w.Header().Set("x-ratelimit-remaining-requests", "9999")
	w.Header().Set("x-ratelimit-reset-requests", "6ms")
	_ = json.NewEncoder(w).Encode(resp)
}

func writeError(w http.ResponseWriter, status int, body string, h http.Header) {
	for k, vs := range h {
		w.Header()[k] = vs
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = io.WriteString(w, body)
}

// mask shows a key the way OpenAI's 401 does: its start and end.
func mask(k string) string {
	if len(k) < 8 {
		return "***"
	}
	return k[:3] + "*****" + k[len(k)-4:]
}
