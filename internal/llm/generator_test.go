package llm_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"math"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/cepcomunicacion/cepjobs/internal/llm"
	"github.com/cepcomunicacion/cepjobs/internal/llm/llmtest"
	"github.com/cepcomunicacion/cepjobs/internal/vendor"
)

const testKey = "sk-test-0123456789abcdefSECRET"

type testBundle struct {
	srv  *llmtest.Server
	gen  *llm.Generator
	cfg  llm.Config
	logs *syncBuffer
}

// syncBuffer is a log sink safe for the generator's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// setup starts a fake endpoint and a generator for it, with limits high
// enough not to matter unless mod lowers them.
func setup(t *testing.T, mod func(*llm.Config)) testBundle {
	t.Helper()
	srv := llmtest.New(t, testKey)
	cfg := llm.Config{
		APIKey:         testKey,
		BaseURL:        srv.BaseURL(),
		Model:          "gpt-4o-mini",
		DailyBudgetUSD: 10,
		RPM:            600000,
		TPM:            100000000,
		MaxTokens:      2000,
		CallTimeout:    5 * time.Second,
		MaxRepairs:     2,
		JSONSchema:     true,
	}
	if mod != nil {
		mod(&cfg)
	}
	logs := &syncBuffer{}
	gen, err := llm.New(cfg, nil, slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return testBundle{srv: srv, gen: gen, cfg: cfg, logs: logs}
}

// Inputs and valid answers, one per kind.

const courseInput = `{"title":"Técnico Superior en Marketing y Publicidad","modality":"semipresencial","duration":"2000 horas","audience":"Personas con bachillerato que quieren trabajar en agencias","campus":"Valencia","highlights":["Prácticas en empresa","Profesorado en activo"]}`

var courseAnswer = mustJSON(llm.CourseDescriptionOutput{
	Title:   "Técnico Superior en Marketing y Publicidad semipresencial",
	Summary: "Aprende a planificar campañas, gestionar redes y analizar resultados con un ciclo oficial que compagina clases presenciales y online.",
	Body: strings.Repeat("Este ciclo te prepara para trabajar en agencias y departamentos de marketing. ", 4) +
		"\n\nCombinarás sesiones en el campus de Valencia con trabajo online, y harás prácticas en empresa.",
	BulletPoints:       []string{"Prácticas en empresa", "Profesorado en activo", "Modalidad semipresencial"},
	SEOMetaDescription: "Estudia el Técnico Superior en Marketing y Publicidad semipresencial en Valencia, con prácticas en empresa.",
})

const adInput = `{"course_title":"Curso de Auxiliar de Enfermería","offer":"Matrícula abierta con prácticas en hospitales","audience":"Personas que quieren trabajar en el sector sanitario","variants":3,"call_to_action":"LEARN_MORE"}`

func adAnswer(headlines ...string) string {
	var out llm.MetaAdCopyOutput
	for _, h := range headlines {
		out.Variants = append(out.Variants, llm.MetaAdVariant{
			PrimaryText: "¿Te ves trabajando en un hospital? Fórmate como auxiliar con prácticas reales.",
			Headline:    h,
			Description: "Matrícula abierta",
		})
	}
	return mustJSON(out)
}

var goodAd = adAnswer("Auxiliar de Enfermería", "Prácticas en hospitales", "Empieza este curso")

const emailInput = `{"purpose":"Invitar a una jornada de puertas abiertas","course_title":"Grado en Diseño","audience":"Leads interesados en diseño","key_points":["Sábado por la mañana","Visita a los talleres"]}`

var emailAnswer = mustJSON(llm.EmailCopyOutput{
	Subject:   "Ven a conocer el Grado en Diseño este sábado",
	Preheader: "Visita los talleres y resuelve tus dudas con el profesorado",
	BodyHTML:  `<p>Hola *|FNAME|*,</p><p>Te esperamos el sábado por la mañana.</p><p><a href="*|CTA_URL|*">Reserva tu plaza</a></p>`,
	BodyText:  "Hola *|FNAME|*,\n\nTe esperamos el sábado por la mañana.\n\nReserva tu plaza: *|CTA_URL|*",
})

// mustJSON encodes v as the generator's normalized output is: without
// HTML escaping.
func mustJSON(v any) string {
	var b bytes.Buffer
	e := json.NewEncoder(&b)
	e.SetEscapeHTML(false)
	if err := e.Encode(v); err != nil {
		panic(err)
	}
	return strings.TrimSpace(b.String())
}

func roles(msgs []llmtest.Message) []string {
	var out []string
	for _, m := range msgs {
		out = append(out, m.Role)
	}
	return out
}

func vendorError(t *testing.T, err error) *vendor.Error {
	t.Helper()
	var ve *vendor.Error
	if !errors.As(err, &ve) {
		t.Fatalf("got error %v (%T), want a *vendor.Error", err, err)
	}
	return ve
}

func TestGenerateEachKind(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		kind   llm.Kind
		input  string
		answer string
	}{
		{llm.CourseDescription, courseInput, courseAnswer},
		{llm.MetaAdCopy, adInput, goodAd},
		{llm.EmailCopy, emailInput, emailAnswer},
	} {
		t.Run(string(tc.kind), func(t *testing.T) {
			t.Parallel()
			b := setup(t, nil)
			b.srv.Enqueue(llmtest.Reply{Content: tc.answer, PromptTokens: 1000, CompletionTokens: 500})
			res, err := b.gen.Generate(context.Background(), llm.Request{Kind: string(tc.kind), Language: "es-ES", Input: json.RawMessage(tc.input)})
			if err != nil {
				t.Fatalf("Generate: %v", err)
			}
			if diff := cmp.Diff(tc.answer, string(res.Output)); diff != "" {
				t.Errorf("Output (-want +got):\n%s", diff)
			}
			wantRes := llm.Result{
				Output: res.Output, Model: "gpt-4o-mini-2024-07-18", PromptVersion: string(tc.kind) + "/v1",
				PromptTokens: 1000, CompletionTokens: 500, Calls: 1,
				// gpt-4o-mini: $0.15 in, $0.60 out per million.
				CostUSD: (1000*0.15 + 500*0.60) / 1e6,
			}
			if diff := cmp.Diff(wantRes, res, cmp.Comparer(func(a, b float64) bool { return math.Abs(a-b) < 1e-12 })); diff != "" {
				t.Errorf("Result (-want +got):\n%s", diff)
			}

			reqs := b.srv.Requests()
			if len(reqs) != 1 {
				t.Fatalf("got %d requests, want 1", len(reqs))
			}
			r := reqs[0]
			if got := r.Header.Get("Authorization"); got != "Bearer "+testKey {
				t.Errorf("Authorization: got %q, want the bearer key", got)
			}
			if r.Body.Model != "gpt-4o-mini" {
				t.Errorf("model: got %q, want gpt-4o-mini", r.Body.Model)
			}
			if diff := cmp.Diff([]string{"system", "user"}, roles(r.Body.Messages)); diff != "" {
				t.Errorf("roles (-want +got):\n%s", diff)
			}
			if r.Body.MaxTokens != 2000 || r.Body.MaxCompletionTokens != 0 {
				t.Errorf("max_tokens %d, max_completion_tokens %d: want 2000 and unset", r.Body.MaxTokens, r.Body.MaxCompletionTokens)
			}
			f := r.Body.ResponseFormat
			if f == nil || f.Type != "json_schema" || f.JSONSchema == nil || f.JSONSchema.Name != string(tc.kind) || !f.JSONSchema.Strict {
				t.Fatalf("response_format: got %+v, want strict json_schema named %s", f, tc.kind)
			}
			if !strings.Contains(r.Body.Messages[0].Content, "español") {
				t.Errorf("system prompt does not name the language")
			}
			// The input travels as JSON data in the user message.
			if !strings.Contains(r.Body.Messages[1].Content, `"audience":`) {
				t.Errorf("user message lacks the input: %q", r.Body.Messages[1].Content)
			}
		})
	}
}

func TestGenerateTokenLimitAndFormatChoices(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name       string
		model      string
		jsonSchema bool
		maxTokens  int
		wantMax    int // max_tokens
		wantMaxCT  int // max_completion_tokens
		wantFormat string
	}{
		{"request lowers max_tokens", "gpt-4o-mini", true, 500, 500, 0, "json_schema"},
		{"request cannot raise it", "gpt-4o-mini", true, 50000, 2000, 0, "json_schema"},
		{"reasoning model", "o4-mini", true, 0, 0, 2000, "json_schema"},
		{"gpt-5 family", "gpt-5-mini", true, 0, 0, 2000, "json_schema"},
		{"claude through the compatibility layer", "claude-haiku-4-5", true, 0, 2000, 0, "json_schema"},
		{"json_object endpoints", "gpt-4o-mini", false, 0, 2000, 0, "json_object"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, func(c *llm.Config) { c.Model, c.JSONSchema = tc.model, tc.jsonSchema })
			// Endpoints that do not enforce the format wrap JSON in
			// a fence; it is still accepted.
			b.srv.Enqueue(llmtest.Reply{Content: "```json\n" + emailAnswer + "\n```"})
			_, err := b.gen.Generate(context.Background(), llm.Request{Kind: "email_copy", Input: json.RawMessage(emailInput), MaxTokens: tc.maxTokens})
			if err != nil {
				t.Fatalf("Generate: %v", err)
			}
			r := b.srv.Requests()[0].Body
			if r.MaxTokens != tc.wantMax || r.MaxCompletionTokens != tc.wantMaxCT {
				t.Errorf("got max_tokens %d, max_completion_tokens %d; want %d, %d", r.MaxTokens, r.MaxCompletionTokens, tc.wantMax, tc.wantMaxCT)
			}
			if r.ResponseFormat == nil || r.ResponseFormat.Type != tc.wantFormat {
				t.Errorf("response_format: got %+v, want %s", r.ResponseFormat, tc.wantFormat)
			}
		})
	}
}

func TestGenerateRepairsAnInvalidAnswer(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	bad := adAnswer("Auxiliar de Enfermería", "Fórmate como auxiliar de enfermería con prácticas", "Empieza ya")
	b.srv.Enqueue(
		llmtest.Reply{Content: bad, PromptTokens: 900, CompletionTokens: 200},
		llmtest.Reply{Content: goodAd, PromptTokens: 1200, CompletionTokens: 190},
	)
	res, err := b.gen.Generate(context.Background(), llm.Request{Kind: "meta_ad_copy", Input: json.RawMessage(adInput)})
	if err != nil {
		t.Fatalf("Generate: %v", err)
	}
	if res.Calls != 2 || res.Repairs != 1 {
		t.Errorf("got %d calls and %d repairs, want 2 and 1", res.Calls, res.Repairs)
	}
	if res.PromptTokens != 2100 || res.CompletionTokens != 390 {
		t.Errorf("usage: got %d+%d tokens, want 2100+390 over both calls", res.PromptTokens, res.CompletionTokens)
	}
	if want := (2100*0.15 + 390*0.60) / 1e6; math.Abs(res.CostUSD-want) > 1e-12 {
		t.Errorf("cost: got %v, want %v", res.CostUSD, want)
	}
	if string(res.Output) != goodAd {
		t.Errorf("Output: got %s, want the second answer", res.Output)
	}
	second := b.srv.Requests()[1].Body.Messages
	if diff := cmp.Diff([]string{"system", "user", "assistant", "user"}, roles(second)); diff != "" {
		t.Fatalf("second request's roles (-want +got):\n%s", diff)
	}
	if second[2].Content != bad {
		t.Errorf("the invalid answer is not sent back as the assistant's")
	}
	repair := second[3].Content
	// 49 characters, 52 bytes: limits count characters.
	for _, want := range []string{"Your answer broke these rules", "variants[1].headline is 49 characters, limit 40", "Answer again with valid JSON only."} {
		if !strings.Contains(repair, want) {
			t.Errorf("repair message %q lacks %q", repair, want)
		}
	}
}

func TestGenerateFailsPermanentlyAfterRepairs(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	b.srv.Always(llmtest.Reply{Content: adAnswer("Auxiliar", "Un titular que se pasa claramente de cuarenta caracteres", "Ok")})
	res, err := b.gen.Generate(context.Background(), llm.Request{Kind: "meta_ad_copy", Input: json.RawMessage(adInput)})
	ve := vendorError(t, err)
	if !ve.Permanent || ve.Code != llm.CodeInvalidAnswer {
		t.Errorf("got %v, want a permanent %s error", err, llm.CodeInvalidAnswer)
	}
	want := "answer invalid after 3 attempts: variants[1].headline is 56 characters, limit 40"
	if !strings.Contains(err.Error(), want) {
		t.Errorf("error %q does not read %q", err, want)
	}
	if n := len(b.srv.Requests()); n != 3 || res.Calls != 3 || res.Repairs != 2 {
		t.Errorf("got %d requests, %d calls, %d repairs; want 3, 3, 2 (1 + CEPJOBS_LLM_MAX_REPAIRS)", n, res.Calls, res.Repairs)
	}
	if res.CostUSD <= 0 || res.Output != nil {
		t.Errorf("a failed job still reports its cost and no output: got cost %v, output %s", res.CostUSD, res.Output)
	}
}

func TestGenerateCutOffAnswerIsRepaired(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	b.srv.Enqueue(
		llmtest.Reply{Content: emailAnswer[:40], FinishReason: "length"},
		llmtest.Reply{Content: emailAnswer},
	)
	res, err := b.gen.Generate(context.Background(), llm.Request{Kind: "email_copy", Input: json.RawMessage(emailInput)})
	if err != nil || res.Repairs != 1 {
		t.Fatalf("got %v and %d repairs, want success after 1", err, res.Repairs)
	}
	msgs := b.srv.Requests()[1].Body.Messages
	if !strings.Contains(msgs[len(msgs)-1].Content, "cut off at the token limit (2000)") {
		t.Errorf("repair does not say the answer was cut off: %q", msgs[len(msgs)-1].Content)
	}
}

func TestGenerateErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name       string
		reply      llmtest.Reply
		key        string // default testKey
		permanent  bool
		throttled  bool
		retryAfter time.Duration
		status     int
		contains   string
	}{
		{
			name:      "429 with Retry-After",
			reply:     llmtest.Reply{Status: 429, Header: http.Header{"Retry-After": {"3"}}, Body: llmtest.ErrorBody("Rate limit reached for gpt-4o-mini on requests per min (RPM)", "requests", "rate_limit_exceeded")},
			throttled: true, retryAfter: 3 * time.Second, status: 429, contains: "rate limited by the endpoint (requests per minute)",
		},
		{
			name:      "429 with x-ratelimit-reset-requests",
			reply:     llmtest.Reply{Status: 429, Header: http.Header{"X-Ratelimit-Reset-Requests": {"2s"}, "X-Ratelimit-Reset-Tokens": {"20ms"}}, Body: llmtest.ErrorBody("Rate limit reached", "requests", "rate_limit_exceeded")},
			throttled: true, retryAfter: 2 * time.Second, status: 429,
		},
		{
			name:      "429 for tokens takes the tokens reset",
			reply:     llmtest.Reply{Status: 429, Header: http.Header{"X-Ratelimit-Reset-Requests": {"6m0s"}, "X-Ratelimit-Reset-Tokens": {"1.5s"}}, Body: llmtest.ErrorBody("Rate limit reached", "tokens", "rate_limit_exceeded")},
			throttled: true, retryAfter: 1500 * time.Millisecond, status: 429,
		},
		{
			name:      "429 with retry-after-ms",
			reply:     llmtest.Reply{Status: 429, Header: http.Header{"Retry-After-Ms": {"250"}, "Retry-After": {"1"}}},
			throttled: true, retryAfter: 250 * time.Millisecond, status: 429,
		},
		{
			name:      "429 out of credit",
			reply:     llmtest.Reply{Status: 429, Body: llmtest.ErrorBody("You exceeded your current quota, please check your plan and billing details.", "insufficient_quota", "insufficient_quota")},
			permanent: true, status: 429, contains: "check billing",
		},
		{
			name: "401 bad key", key: "sk-wrong-key-123456",
			permanent: true, status: 401, contains: "API key rejected",
		},
		{
			name:      "403",
			reply:     llmtest.Reply{Status: 403, Body: llmtest.ErrorBody("Country, region, or territory not supported", "request_forbidden", "unsupported_country_region_territory")},
			permanent: true, status: 403,
		},
		{
			name:      "404 model",
			reply:     llmtest.Reply{Status: 404, Body: llmtest.ErrorBody("The model `gpt-4o-mini` does not exist or you do not have access to it.", "invalid_request_error", "model_not_found")},
			permanent: true, status: 404, contains: `model "gpt-4o-mini" not found`,
		},
		{
			name:      "400 content policy",
			reply:     llmtest.Reply{Status: 400, Body: llmtest.ErrorBody("Your request was rejected as a result of our safety system.", "invalid_request_error", "content_policy_violation")},
			permanent: true, status: 400, contains: "content policy",
		},
		{
			name:      "400 context length",
			reply:     llmtest.Reply{Status: 400, Body: llmtest.ErrorBody("This model's maximum context length is 128000 tokens.", "invalid_request_error", "context_length_exceeded")},
			permanent: true, status: 400, contains: "context window",
		},
		{
			name:   "500",
			reply:  llmtest.Reply{Status: 500, Body: llmtest.ErrorBody("The server had an error while processing your request.", "server_error", "")},
			status: 500, contains: "endpoint error",
		},
		{
			name:   "503 with Retry-After",
			reply:  llmtest.Reply{Status: 503, Header: http.Header{"Retry-After": {"7"}}, Body: llmtest.ErrorBody("The engine is currently overloaded", "server_error", "")},
			status: 503, retryAfter: 7 * time.Second,
		},
		{
			name:   "502 from a proxy, not JSON",
			reply:  llmtest.Reply{Status: 502, Body: "<html><body>Bad gateway</body></html>"},
			status: 502,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, func(c *llm.Config) {
				if tc.key != "" {
					c.APIKey = tc.key
				}
			})
			b.srv.Enqueue(tc.reply)
			res, err := b.gen.Generate(context.Background(), llm.Request{Kind: "email_copy", Input: json.RawMessage(emailInput)})
			ve := vendorError(t, err)
			if ve.Vendor != "openai" || ve.Status != tc.status || ve.Permanent != tc.permanent || ve.Throttled != tc.throttled || ve.RetryAfter != tc.retryAfter {
				t.Errorf("got %#v,\nwant status %d, permanent %v, throttled %v, retry after %s", ve, tc.status, tc.permanent, tc.throttled, tc.retryAfter)
			}
			if !strings.Contains(err.Error(), tc.contains) {
				t.Errorf("error %q does not say %q", err, tc.contains)
			}
			for _, secret := range []string{testKey, tc.key, "Incorrect API key", "sk-", "hospital", "Diseño"} {
				if secret != "" && strings.Contains(err.Error(), secret) {
					t.Errorf("error %q shows %q", err, secret)
				}
			}
			if res.Calls != 0 {
				t.Errorf("got %d answered calls, want 0", res.Calls)
			}
		})
	}
}

func TestGenerateFinishReasons(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		reply llmtest.Reply
		code  string
	}{
		{"content_filter", llmtest.Reply{Content: `{"subject":"`, FinishReason: "content_filter"}, llm.CodeContentFilter},
		{"refusal", llmtest.Reply{Refusal: "I'm sorry, I cannot help with that."}, llm.CodeRefusal},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, nil)
			b.srv.Enqueue(tc.reply)
			res, err := b.gen.Generate(context.Background(), llm.Request{Kind: "email_copy", Input: json.RawMessage(emailInput)})
			ve := vendorError(t, err)
			if !ve.Permanent || ve.Code != tc.code {
				t.Errorf("got %v, want a permanent %s error", err, tc.code)
			}
			if res.Calls != 1 || res.CostUSD <= 0 {
				t.Errorf("got %d calls costing %v, want the answered call counted", res.Calls, res.CostUSD)
			}
			if len(b.srv.Requests()) != 1 {
				t.Errorf("got %d requests, want 1: a filtered answer is not repaired", len(b.srv.Requests()))
			}
		})
	}
}

func TestGenerateCallTimeout(t *testing.T) {
	t.Parallel()
	b := setup(t, func(c *llm.Config) { c.CallTimeout = 300 * time.Millisecond })
	b.srv.Enqueue(llmtest.Reply{Content: emailAnswer, Delay: time.Minute})
	start := time.Now()
	_, err := b.gen.Generate(context.Background(), llm.Request{Kind: "email_copy", Input: json.RawMessage(emailInput)})
	elapsed := time.Since(start)
	ve := vendorError(t, err)
	if ve.Permanent || ve.Throttled || !strings.Contains(err.Error(), "timed out (CEPJOBS_LLM_CALL_TIMEOUT)") {
		t.Errorf("got %v, want a transient timeout", err)
	}
	if elapsed > 3*time.Second {
		t.Errorf("took %s, want about CEPJOBS_LLM_CALL_TIMEOUT (300ms)", elapsed)
	}
}

func TestGenerateStopsWhenCancelled(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	b.srv.Enqueue(llmtest.Reply{Content: emailAnswer, Delay: time.Minute})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		<-b.srv.Arrived()
		cancel()
	}()
	start := time.Now()
	_, err := b.gen.Generate(ctx, llm.Request{Kind: "email_copy", Input: json.RawMessage(emailInput)})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("got %v, want it to wrap context.Canceled", err)
	}
	if vendor.IsPermanent(err) {
		t.Errorf("got %v, want a cancellation not marked permanent", err)
	}
	if elapsed := time.Since(start); elapsed > 3*time.Second {
		t.Errorf("took %s after cancel, want prompt return", elapsed)
	}
}

func TestRPMLimiterWaits(t *testing.T) {
	t.Parallel()
	// 60 a minute is one a second, one at a time.
	b := setup(t, func(c *llm.Config) { c.RPM = 60 })
	b.srv.Always(llmtest.Reply{Content: emailAnswer})
	for range 2 {
		if _, err := b.gen.Generate(context.Background(), llm.Request{Kind: "email_copy", Input: json.RawMessage(emailInput)}); err != nil {
			t.Fatalf("Generate: %v", err)
		}
	}
	reqs := b.srv.Requests()
	if gap := reqs[1].At.Sub(reqs[0].At); gap < 900*time.Millisecond {
		t.Errorf("second request came %s after the first, want about 1s at CEPJOBS_LLM_RPM=60", gap)
	}
}

func TestLimiterThrottlesInsteadOfWaitingLong(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		mod  func(*llm.Config)
		// which names the limit reached
		which string
	}{
		{"rpm", func(c *llm.Config) { c.RPM, c.CallTimeout = 1, time.Second }, "CEPJOBS_LLM_RPM"},
		// Each call reserves its prompt and 2000 tokens of answer; at
		// 4500 a minute the second must wait ~15s for tokens.
		{"tpm", func(c *llm.Config) { c.TPM, c.CallTimeout = 4500, time.Second }, "CEPJOBS_LLM_TPM"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, tc.mod)
			b.srv.Always(llmtest.Reply{Content: emailAnswer})
			req := llm.Request{Kind: "email_copy", Input: json.RawMessage(emailInput)}
			if _, err := b.gen.Generate(context.Background(), req); err != nil {
				t.Fatalf("first Generate: %v", err)
			}
			start := time.Now()
			_, err := b.gen.Generate(context.Background(), req)
			ve := vendorError(t, err)
			if !ve.Throttled || ve.Permanent || ve.Code != llm.CodeLocalRateLimit || ve.RetryAfter < 5*time.Second {
				t.Errorf("got %#v, want a throttled %s error asking to come back later", ve, llm.CodeLocalRateLimit)
			}
			if !strings.Contains(err.Error(), tc.which) {
				t.Errorf("error %q does not name %s", err, tc.which)
			}
			if time.Since(start) > 500*time.Millisecond {
				t.Errorf("took %s, want an immediate answer instead of a long wait", time.Since(start))
			}
			if n := len(b.srv.Requests()); n != 1 {
				t.Errorf("got %d requests, want the throttled one not sent", n)
			}
		})
	}
}

func TestGenerateConcurrently(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	b.srv.Always(llmtest.Reply{Content: courseAnswer})
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for range 16 {
		wg.Go(func() {
			_, err := b.gen.Generate(context.Background(), llm.Request{Kind: "course_description", Input: json.RawMessage(courseInput)})
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("Generate: %v", err)
		}
	}
}

func TestEstimateCostUSDBoundsActualCost(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		kind, input, answer string
	}{
		{"course_description", courseInput, courseAnswer},
		{"meta_ad_copy", adInput, goodAd},
		{"email_copy", emailInput, emailAnswer},
	} {
		t.Run(tc.kind, func(t *testing.T) {
			t.Parallel()
			// No repairs: the bound must hold for a single call too.
			b := setup(t, func(c *llm.Config) { c.MaxRepairs = 0 })
			// The fake counts a token per three bytes, more than real
			// tokenizers do for Spanish text.
			b.srv.Enqueue(llmtest.Reply{Content: tc.answer})
			req := llm.Request{Kind: tc.kind, Input: json.RawMessage(tc.input)}
			est := b.gen.EstimateCostUSD(req)
			res, err := b.gen.Generate(context.Background(), req)
			if err != nil {
				t.Fatalf("Generate: %v", err)
			}
			if est < res.CostUSD || res.CostUSD <= 0 {
				t.Errorf("estimate %v, actual cost %v: want estimate ≥ actual > 0", est, res.CostUSD)
			}
		})
	}
	b := setup(t, nil)
	one := setup(t, func(c *llm.Config) { c.MaxRepairs = 0 })
	req := llm.Request{Kind: "email_copy", Input: json.RawMessage(emailInput)}
	if withRepairs, single := b.gen.EstimateCostUSD(req), one.gen.EstimateCostUSD(req); withRepairs < 3*single {
		t.Errorf("estimate with 2 repairs %v, single call %v: want the repairs' worst case counted", withRepairs, single)
	}
	if got := b.gen.EstimateCostUSD(llm.Request{Kind: "email_copy", Input: json.RawMessage(`{}`)}); got != 0 {
		t.Errorf("estimate of an invalid request: got %v, want 0", got)
	}
}

func TestGenerateRejectsInvalidRequests(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	_, err := b.gen.Generate(context.Background(), llm.Request{Kind: "meta_ad_copy", Language: "español", Input: json.RawMessage(`{"course_title":"X","variants":9}`)})
	ve := vendorError(t, err)
	if !ve.Permanent || ve.Code != llm.CodeInvalidRequest {
		t.Errorf("got %v, want a permanent %s error", err, llm.CodeInvalidRequest)
	}
	for _, want := range []string{"language", "input.offer is required", "input.audience is required", "input.variants must be between 1 and 5"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	if n := len(b.srv.Requests()); n != 0 {
		t.Errorf("got %d requests, want none for an invalid request", n)
	}
}

func TestLogsHoldNoContent(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	b.srv.Enqueue(
		llmtest.Reply{Content: adAnswer("Auxiliar", "Un titular que se pasa claramente de cuarenta caracteres", "Ok")},
		llmtest.Reply{Content: goodAd},
	)
	if _, err := b.gen.Generate(context.Background(), llm.Request{Kind: "meta_ad_copy", Input: json.RawMessage(adInput)}); err != nil {
		t.Fatalf("Generate: %v", err)
	}
	logs := b.logs.String()
	if !strings.Contains(logs, `"prompt_tokens"`) {
		t.Errorf("calls are not logged: %s", logs)
	}
	for _, secret := range []string{testKey, "Enfermería", "hospital", "titular"} {
		if strings.Contains(logs, secret) {
			t.Errorf("logs show %q: %s", secret, logs)
		}
	}
}

func TestNew(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		cfg  llm.Config
		want string // start of the error
	}{
		{"disabled", llm.Config{DailyBudgetUSD: 10}, "OPENAI_API_KEY"},
		{"unpriced model", llm.Config{APIKey: "k", Model: "llama3.1:8b", DailyBudgetUSD: 10}, "CEPJOBS_LLM_PRICES"},
	} {
		if _, err := llm.New(tc.cfg, nil, nil); err == nil || !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want an error starting %s", tc.name, err, tc.want)
		}
	}
	g, err := llm.New(llm.Config{APIKey: "k", Model: "llama3.1:8b", DailyBudgetUSD: 10, Prices: []string{"llama3.1=0/0"}}, nil, nil)
	if err != nil {
		t.Fatalf("New with a priced local model: %v", err)
	}
	if g.Model() != "llama3.1:8b" {
		t.Errorf("Model: got %q, want llama3.1:8b", g.Model())
	}
}
