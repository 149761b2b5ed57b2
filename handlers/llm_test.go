package handlers_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/cepcomunicacion/cepjobs/handlers"
	"github.com/cepcomunicacion/cepjobs/internal/llm"
	"github.com/cepcomunicacion/cepjobs/internal/llm/llmtest"
	"github.com/cepcomunicacion/cepjobs/store"
	"github.com/cepcomunicacion/cepjobs/tasks"
)

const (
	llmKey         = "sk-test-0123456789"
	callbackSecret = "callback-secret-0123456789"
	courseInput    = `{"title":"Técnico en Marketing Digital","modality":"online","duration":"600 horas","audience":"Personas que quieren trabajar en marketing"}`
)

var courseAnswer = func() string {
	b, _ := json.Marshal(llm.CourseDescriptionOutput{
		Title:              "Técnico en Marketing Digital online",
		Summary:            "Aprende a planificar campañas y medir resultados desde casa.",
		Body:               strings.Repeat("Un curso práctico para trabajar en marketing digital. ", 8),
		BulletPoints:       []string{"100 % online", "Tutor personal", "Prácticas"},
		SEOMetaDescription: "Estudia el Técnico en Marketing Digital online: 600 horas, tutor personal y prácticas para trabajar en agencias.",
	})
	return string(b)
}()

// dispatched records outbox rows a handler wanted sent.
type dispatched struct {
	mu  sync.Mutex
	ids []string
}

func (d *dispatched) Now(_ context.Context, id, _ string, _ []byte) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.ids = append(d.ids, id)
}

type llmBundle struct {
	fake  *llmtest.Server
	store *store.Store
	mux   *asynq.ServeMux
	sent  *dispatched
	reg   *prometheus.Registry
	now   time.Time
}

func llmSetup(t *testing.T, budget float64, edit func(*llm.Config)) *llmBundle {
	t.Helper()
	fake := llmtest.New(t, llmKey)
	cfg := llm.Config{APIKey: llmKey, BaseURL: fake.BaseURL(), Model: "gpt-4o-mini", DailyBudgetUSD: 10, RPM: 6000, TPM: 10_000_000,
		MaxTokens: 2000, CallTimeout: 2 * time.Second, MaxRepairs: 2, JSONSchema: true}
	if edit != nil {
		edit(&cfg)
	}
	gen, err := llm.New(cfg, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(context.Background(), store.Config{URL: dbURL})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	b := &llmBundle{fake: fake, store: st, sent: &dispatched{}, reg: prometheus.NewRegistry(), now: time.Now().UTC()}
	b.mux = handlers.NewLLM(handlers.LLMDeps{
		Store: st, Generator: gen, Dispatch: b.sent, DailyBudgetUSD: budget, CallbackSecret: callbackSecret,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Metrics: handlers.NewLLMMetrics(b.reg),
		Now: func() time.Time { return b.now },
	})
	return b
}

func (b *llmBundle) job(t *testing.T, kind, input, callback string) string {
	t.Helper()
	id, _, err := b.store.CreateContentJob(context.Background(), store.ContentJob{Kind: kind, Language: "es-ES", Input: json.RawMessage(input),
		CallbackURL: callback, SubmittedBy: "test"}, b.now, tasks.TypeContentGenerate, func(id string) ([]byte, error) {
		return json.Marshal(tasks.ContentGenerate{JobID: id})
	})
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func (b *llmBundle) run(typ, id string) error {
	payload, _ := json.Marshal(map[string]string{"job_id": id})
	return b.mux.ProcessTask(context.Background(), asynq.NewTask(typ, payload))
}

func (b *llmBundle) load(t *testing.T, id string) store.ContentJob {
	t.Helper()
	j, err := b.store.ContentJob(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return j
}

func TestContentJobWithSignedCallback(t *testing.T) {
	var got struct {
		sig  string
		body []byte
	}
	cms := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got.sig = r.Header.Get(handlers.SignatureHeader)
		got.body, _ = io.ReadAll(r.Body)
		w.WriteHeader(http.StatusNoContent)
	}))
	defer cms.Close()
	b := llmSetup(t, 10, nil)
	// The first answer breaks the schema; the repair request carries the
	// problems and the second answer is good.
	b.fake.Enqueue(llmtest.Reply{Content: `{"title":"x"}`}, llmtest.Reply{Content: courseAnswer})
	id := b.job(t, "course_description", courseInput, cms.URL+"/hooks/content")
	if err := b.run(tasks.TypeContentGenerate, id); err != nil {
		t.Fatal(err)
	}
	j := b.load(t, id)
	if j.Status != store.ContentCompleted || j.PromptVersion == "" || j.Model == "" || j.CostUSD <= 0 || j.PromptTokens == 0 {
		t.Fatalf("job: got %+v", j)
	}
	var out llm.CourseDescriptionOutput
	if err := json.Unmarshal(j.Output, &out); err != nil || out.Title == "" {
		t.Errorf("output: %s (%v)", j.Output, err)
	}
	if reqs := b.fake.Requests(); len(reqs) != 2 || !strings.Contains(reqs[1].Body.Messages[len(reqs[1].Body.Messages)-1].Content, "summary") {
		t.Errorf("repair: got %d requests; the second should feed back the missing fields", len(reqs))
	}
	if spent, _ := b.store.SpentOn(context.Background(), b.now); spent < j.CostUSD {
		t.Errorf("spending recorded: got %v, want at least %v", spent, j.CostUSD)
	}
	if j.CallbackStatus != store.CallbackPending || len(b.sent.ids) != 1 {
		t.Fatalf("callback: status %q, %d outbox rows dispatched; want pending and 1", j.CallbackStatus, len(b.sent.ids))
	}

	if err := b.run(tasks.TypeContentCallback, id); err != nil {
		t.Fatal(err)
	}
	if want := handlers.Sign(callbackSecret, got.body); got.sig != want || !strings.HasPrefix(got.sig, "sha256=") {
		t.Errorf("signature: got %q, want %q", got.sig, want)
	}
	var cb handlers.CallbackBody
	if err := json.Unmarshal(got.body, &cb); err != nil || cb.ID != id || cb.Status != "completed" || len(cb.Result) == 0 {
		t.Errorf("callback body: %s (%v)", got.body, err)
	}
	if j := b.load(t, id); j.CallbackStatus != store.CallbackDelivered {
		t.Errorf("callback status: got %q, want delivered", j.CallbackStatus)
	}
	// A duplicate callback task sends nothing more.
	got.body = nil
	if err := b.run(tasks.TypeContentCallback, id); err != nil || got.body != nil {
		t.Errorf("second callback task: err %v, sent again %v", err, got.body != nil)
	}
}

func TestContentJobFailures(t *testing.T) {
	b := llmSetup(t, 10, nil)

	// 401: permanent, the job fails with a readable reason.
	b.fake.Enqueue(llmtest.Reply{Status: 401, Body: llmtest.ErrorBody("Incorrect API key provided: sk-te***", "invalid_request_error", "invalid_api_key")})
	id := b.job(t, "course_description", courseInput, "")
	if err := b.run(tasks.TypeContentGenerate, id); !errors.Is(err, asynq.SkipRetry) {
		t.Errorf("401: got %v, want SkipRetry", err)
	}
	if j := b.load(t, id); j.Status != store.ContentFailed || j.Error == "" || strings.Contains(j.Error, "sk-te") {
		t.Errorf("401 job: got status %s error %q", j.Status, j.Error)
	}

	// 429 with Retry-After: retried later, not a failure, the job says why.
	b.fake.Enqueue(llmtest.Reply{Status: 429, Header: http.Header{"Retry-After": {"7"}}, Body: llmtest.ErrorBody("Rate limit reached", "requests", "rate_limit_exceeded")})
	id = b.job(t, "course_description", courseInput, "")
	err := b.run(tasks.TypeContentGenerate, id)
	if err == nil || handlers.IsFailure(err) {
		t.Fatalf("429: got %v, want a throttled (non-failure) error", err)
	}
	if d := handlers.RetryDelay(0, err, nil); d < 7*time.Second || d > 8*time.Second {
		t.Errorf("429: retry in %s, want Retry-After's 7s", d)
	}
	if j := b.load(t, id); j.Status != store.ContentQueued || j.Error == "" {
		t.Errorf("429 job: got status %s error %q, want queued with the reason", j.Status, j.Error)
	}

	// A slow endpoint hits the per-call timeout: transient.
	b.fake.Enqueue(llmtest.Reply{Content: courseAnswer, Delay: 5 * time.Second})
	id = b.job(t, "course_description", courseInput, "")
	start := time.Now()
	err = b.run(tasks.TypeContentGenerate, id)
	if err == nil || errors.Is(err, asynq.SkipRetry) || time.Since(start) > 4*time.Second {
		t.Errorf("slow endpoint: got %v after %s, want a retryable timeout within the 2 s call timeout", err, time.Since(start))
	}
}

func TestDailyBudgetMakesJobsWait(t *testing.T) {
	b := llmSetup(t, 0.0000001, nil)
	b.fake.Always(llmtest.Reply{Content: courseAnswer})
	id := b.job(t, "course_description", courseInput, "")
	err := b.run(tasks.TypeContentGenerate, id)
	if err == nil || handlers.IsFailure(err) {
		t.Fatalf("over the cap: got %v, want a wait that is not a failure", err)
	}
	tomorrow := b.now.Truncate(24 * time.Hour).Add(24 * time.Hour)
	if d := handlers.RetryDelay(0, err, nil); d < tomorrow.Sub(b.now) {
		t.Errorf("retry in %s, want at least until the next UTC day (%s)", d, tomorrow.Sub(b.now))
	}
	j := b.load(t, id)
	if j.Status != store.ContentWaitingBudget || !strings.Contains(j.Error, "daily LLM budget") {
		t.Errorf("job: got %s %q, want waiting_budget with the reason", j.Status, j.Error)
	}
	if n := len(b.fake.Requests()); n != 0 {
		t.Errorf("calls made over the cap: %d", n)
	}
}

// TestCancelFromDashboardStopsTheCall: asynq cancels the task's context when
// ops cancel it in the dashboard; the model call stops and the job fails as
// cancelled instead of running on.
func TestCancelFromDashboardStopsTheCall(t *testing.T) {
	b := llmSetup(t, 10, func(c *llm.Config) { c.CallTimeout = 30 * time.Second })
	b.fake.Enqueue(llmtest.Reply{Content: courseAnswer, Delay: 20 * time.Second})
	id := b.job(t, "course_description", courseInput, "")
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		<-b.fake.Arrived()
		cancel()
	}()
	payload, _ := json.Marshal(tasks.ContentGenerate{JobID: id})
	start := time.Now()
	err := b.mux.ProcessTask(ctx, asynq.NewTask(tasks.TypeContentGenerate, payload))
	if err == nil || time.Since(start) > 5*time.Second {
		t.Fatalf("cancelled call: got %v after %s, want an error at once", err, time.Since(start))
	}
	if j := b.load(t, id); j.Status != store.ContentFailed || !strings.Contains(j.Error, "cancelled") {
		t.Errorf("job after cancel: got %s %q, want failed as cancelled", j.Status, j.Error)
	}
}
