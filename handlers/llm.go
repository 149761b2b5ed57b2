package handlers

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/cepcomunicacion/cepjobs/internal/llm"
	"github.com/cepcomunicacion/cepjobs/internal/vendor"
	"github.com/cepcomunicacion/cepjobs/store"
	"github.com/cepcomunicacion/cepjobs/tasks"
)

// generator is what the content handler needs of *llm.Generator.
type generator interface {
	Generate(ctx context.Context, req llm.Request) (llm.Result, error)
	EstimateCostUSD(req llm.Request) float64
}

// contentStore is what worker-llm needs of the database.
type contentStore interface {
	StartContentJob(ctx context.Context, id string, now time.Time) (store.ContentJob, error)
	ContentJob(ctx context.Context, id string) (store.ContentJob, error)
	WaitContentJob(ctx context.Context, id, status, reason string, now time.Time) error
	RecordLLMUsage(ctx context.Context, jobID string, u store.LLMUsage, now time.Time) error
	SpentOn(ctx context.Context, day time.Time) (float64, error)
	FinishContentJob(ctx context.Context, id string, o store.ContentOutcome, now time.Time, callbackType string, payload func(string) ([]byte, error)) (string, error)
	RecordCallback(ctx context.Context, id, status, errText string, now time.Time) error
}

// LLMDeps wires worker-llm.
type LLMDeps struct {
	Store     contentStore
	Generator generator
	Dispatch  outboxDispatcher
	// DailyBudgetUSD caps spending per UTC day; 0 means no cap.
	DailyBudgetUSD float64
	// CallbackSecret signs callbacks (HMAC-SHA256 over the body).
	CallbackSecret string
	HTTP           *http.Client
	Logger         *slog.Logger
	Metrics        *LLMMetrics
	Now            func() time.Time
}

// LLM handles content:generate and content:callback.
type LLM struct{ d LLMDeps }

// NewLLM returns worker-llm's mux.
func NewLLM(d LLMDeps) *asynq.ServeMux {
	if d.Now == nil {
		d.Now = time.Now
	}
	if d.HTTP == nil {
		d.HTTP = vendor.NewHTTPClient(15 * time.Second)
	}
	h := &LLM{d: d}
	mux := asynq.NewServeMux()
	mux.HandleFunc(tasks.TypeContentGenerate, h.generate)
	mux.HandleFunc(tasks.TypeContentCallback, h.callback)
	return mux
}

// ContentResult is the task's asynq result, shown in the dashboard.
type ContentResult struct {
	JobID            string          `json:"job_id"`
	Status           string          `json:"status"`
	Model            string          `json:"model,omitempty"`
	PromptVersion    string          `json:"prompt_version,omitempty"`
	PromptTokens     int             `json:"prompt_tokens"`
	CompletionTokens int             `json:"completion_tokens"`
	CostUSD          float64         `json:"cost_usd"`
	Error            string          `json:"error,omitempty"`
	Output           json.RawMessage `json:"output,omitempty"`
}

func (h *LLM) generate(ctx context.Context, t *asynq.Task) error {
	p, err := tasks.Decode[tasks.ContentGenerate](t)
	if err != nil {
		return err
	}
	job, err := h.d.Store.StartContentJob(ctx, p.JobID, h.d.Now())
	if errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("content job %s not found: %w", p.JobID, asynq.SkipRetry)
	}
	if err != nil {
		return err
	}
	if job.Status == store.ContentCompleted || job.Status == store.ContentFailed {
		return nil
	}
	req := llm.Request{Kind: job.Kind, Language: job.Language, Input: job.Input}

	// The daily cap: over it, the job waits for the next UTC day instead
	// of failing, and says so where ops look (the job and the task).
	if h.d.DailyBudgetUSD > 0 {
		now := h.d.Now().UTC()
		spent, err := h.d.Store.SpentOn(ctx, now)
		if err != nil {
			return err
		}
		if est := h.d.Generator.EstimateCostUSD(req); spent+est > h.d.DailyBudgetUSD {
			tomorrow := now.Truncate(24 * time.Hour).Add(24 * time.Hour)
			reason := fmt.Sprintf("daily LLM budget reached: $%.4f spent of $%.2f (this job may cost up to $%.4f); waiting until %s",
				spent, h.d.DailyBudgetUSD, est, tomorrow.Format(time.RFC3339))
			if err := h.d.Store.WaitContentJob(ctx, job.ID, store.ContentWaitingBudget, reason, now); err != nil {
				return err
			}
			h.d.Metrics.failures.WithLabelValues("budget").Inc()
			return &vendor.Error{Vendor: "budget", Op: "generate content", Message: reason, Throttled: true, RetryAfter: tomorrow.Sub(now) + time.Minute}
		}
	}

	start := time.Now()
	res, err := h.d.Generator.Generate(ctx, req)
	h.d.Metrics.latency.WithLabelValues(job.Kind).Observe(time.Since(start).Seconds())
	if res.CostUSD > 0 || res.PromptTokens > 0 {
		h.d.Metrics.tokens.WithLabelValues(res.Model, "in").Add(float64(res.PromptTokens))
		h.d.Metrics.tokens.WithLabelValues(res.Model, "out").Add(float64(res.CompletionTokens))
		h.d.Metrics.cost.WithLabelValues(res.Model).Add(res.CostUSD)
		if uerr := h.d.Store.RecordLLMUsage(context.WithoutCancel(ctx), job.ID, store.LLMUsage{Model: res.Model,
			PromptTokens: res.PromptTokens, CompletionTokens: res.CompletionTokens, CostUSD: res.CostUSD}, h.d.Now()); uerr != nil {
			h.d.Logger.Error("record llm usage", "job_id", job.ID, "err", uerr)
		}
	}
	// asynq cancels the context when ops cancel the task in the dashboard
	// (it never does on shutdown): the job ends there, failed.
	cancelled := errors.Is(ctx.Err(), context.Canceled)
	if cancelled && err != nil {
		err = fmt.Errorf("cancelled (from the dashboard, or the worker lost its lease): %w", err)
	}
	switch {
	case err == nil:
		return h.finish(ctx, t, job, store.ContentOutcome{Status: store.ContentCompleted, Output: res.Output, Model: res.Model,
			PromptVersion: res.PromptVersion, PromptTokens: res.PromptTokens, CompletionTokens: res.CompletionTokens, CostUSD: res.CostUSD})
	case vendor.IsPermanent(err) || cancelled:
		h.d.Metrics.failures.WithLabelValues(failureReason(err)).Inc()
		if ferr := h.finish(ctx, t, job, store.ContentOutcome{Status: store.ContentFailed, Model: res.Model, PromptVersion: res.PromptVersion,
			PromptTokens: res.PromptTokens, CompletionTokens: res.CompletionTokens, CostUSD: res.CostUSD, Error: err.Error()}); ferr != nil {
			return ferr
		}
		return fmt.Errorf("generate content %s: %w: %w", job.ID, err, asynq.SkipRetry)
	default:
		h.d.Metrics.failures.WithLabelValues(failureReason(err)).Inc()
		if final, _ := finalAttempt(ctx, err); final {
			if ferr := h.finish(ctx, t, job, store.ContentOutcome{Status: store.ContentFailed, Error: err.Error(),
				PromptTokens: res.PromptTokens, CompletionTokens: res.CompletionTokens, CostUSD: res.CostUSD}); ferr != nil {
				return ferr
			}
		} else if werr := h.d.Store.WaitContentJob(context.WithoutCancel(ctx), job.ID, store.ContentQueued, err.Error(), h.d.Now()); werr != nil {
			return werr
		}
		return fmt.Errorf("generate content %s: %w", job.ID, err)
	}
}

func failureReason(err error) string {
	var ve *vendor.Error
	switch {
	case errors.Is(err, context.Canceled):
		return "cancelled"
	case errors.As(err, &ve) && ve.Throttled:
		return "throttled"
	case errors.As(err, &ve) && ve.Permanent && ve.Status == 0:
		return "invalid_output"
	case errors.As(err, &ve) && ve.Permanent:
		return "permanent"
	default:
		return "transient"
	}
}

// finish records the outcome, queues the callback and writes the task result.
func (h *LLM) finish(ctx context.Context, t *asynq.Task, job store.ContentJob, o store.ContentOutcome) error {
	ctx = context.WithoutCancel(ctx)
	outboxID, err := h.d.Store.FinishContentJob(ctx, job.ID, o, h.d.Now(), tasks.TypeContentCallback, callbackPayload)
	if err != nil {
		return err
	}
	if outboxID != "" {
		payload, _ := callbackPayload(job.ID)
		h.d.Dispatch.Now(ctx, outboxID, tasks.TypeContentCallback, payload)
	}
	h.d.Metrics.jobs.WithLabelValues(job.Kind, o.Status).Inc()
	h.d.Logger.Info("content job finished", "job_id", job.ID, "kind", job.Kind, "status", o.Status, "model", o.Model,
		"prompt_tokens", o.PromptTokens, "completion_tokens", o.CompletionTokens, "cost_usd", o.CostUSD)
	if rw := t.ResultWriter(); rw != nil {
		b, _ := json.Marshal(ContentResult{JobID: job.ID, Status: o.Status, Model: o.Model, PromptVersion: o.PromptVersion,
			PromptTokens: o.PromptTokens, CompletionTokens: o.CompletionTokens, CostUSD: o.CostUSD, Error: o.Error, Output: o.Output})
		_, _ = rw.Write(b)
	}
	return nil
}

func callbackPayload(id string) ([]byte, error) {
	return json.Marshal(tasks.ContentCallback{JobID: id})
}

// CallbackBody is what the CMS receives at its callback URL.
type CallbackBody struct {
	ID            string          `json:"id"`
	Kind          string          `json:"kind"`
	Status        string          `json:"status"`
	Result        json.RawMessage `json:"result,omitempty"`
	Error         string          `json:"error,omitempty"`
	Model         string          `json:"model,omitempty"`
	PromptVersion string          `json:"prompt_version,omitempty"`
	Usage         struct {
		PromptTokens     int `json:"prompt_tokens"`
		CompletionTokens int `json:"completion_tokens"`
	} `json:"usage"`
	CostUSD float64   `json:"cost_usd"`
	SentAt  time.Time `json:"sent_at"`
}

// SignatureHeader carries "sha256=<hex HMAC-SHA256 of the body>"; the
// body's sent_at lets the receiver refuse replays.
const SignatureHeader = "X-Cepjobs-Signature"

// Sign computes the signature header value for body.
func Sign(secret string, body []byte) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

func (h *LLM) callback(ctx context.Context, t *asynq.Task) error {
	p, err := tasks.Decode[tasks.ContentCallback](t)
	if err != nil {
		return err
	}
	job, err := h.d.Store.ContentJob(ctx, p.JobID)
	if errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("callback for content job %s: not found: %w", p.JobID, asynq.SkipRetry)
	}
	if err != nil {
		return err
	}
	if job.CallbackStatus != store.CallbackPending || job.CallbackURL == "" {
		return nil
	}
	if h.d.CallbackSecret == "" {
		msg := "CEPJOBS_CALLBACK_SECRET is not set: callbacks are never sent unsigned"
		_ = h.d.Store.RecordCallback(ctx, job.ID, store.CallbackFailed, msg, h.d.Now())
		return fmt.Errorf("callback for content job %s: %s: %w", job.ID, msg, asynq.SkipRetry)
	}
	b := CallbackBody{ID: job.ID, Kind: job.Kind, Status: job.Status, Result: job.Output, Error: job.Error,
		Model: job.Model, PromptVersion: job.PromptVersion, CostUSD: job.CostUSD, SentAt: h.d.Now().UTC()}
	b.Usage.PromptTokens, b.Usage.CompletionTokens = job.PromptTokens, job.CompletionTokens
	body, err := json.Marshal(b)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, job.CallbackURL, bytes.NewReader(body))
	if err != nil {
		_ = h.d.Store.RecordCallback(ctx, job.ID, store.CallbackFailed, "invalid callback URL", h.d.Now())
		return fmt.Errorf("callback for content job %s: %v: %w", job.ID, err, asynq.SkipRetry)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "cepjobs-callback/1")
	req.Header.Set(SignatureHeader, Sign(h.d.CallbackSecret, body))
	req.Header.Set("X-Cepjobs-Delivery", job.ID)
	resp, _, err := vendor.Do(h.d.HTTP, req, "callback", "post content result")
	if err == nil && resp.StatusCode/100 != 2 {
		err = vendor.StatusError("callback", "post content result", resp, "", "", h.d.Now())
	}
	now := h.d.Now()
	switch {
	case err == nil:
		return h.d.Store.RecordCallback(ctx, job.ID, store.CallbackDelivered, "", now)
	case vendor.IsPermanent(err):
		_ = h.d.Store.RecordCallback(context.WithoutCancel(ctx), job.ID, store.CallbackFailed, err.Error(), now)
		return fmt.Errorf("callback for content job %s: %w: %w", job.ID, err, asynq.SkipRetry)
	default:
		status := ""
		if final, _ := finalAttempt(ctx, err); final {
			status = store.CallbackFailed
		}
		_ = h.d.Store.RecordCallback(context.WithoutCancel(ctx), job.ID, status, err.Error(), now)
		return fmt.Errorf("callback for content job %s: %w", job.ID, err)
	}
}

// LLMMetrics are worker-llm's counters.
type LLMMetrics struct {
	tokens   *prometheus.CounterVec
	cost     *prometheus.CounterVec
	latency  *prometheus.HistogramVec
	failures *prometheus.CounterVec
	jobs     *prometheus.CounterVec
}

// NewLLMMetrics registers worker-llm's metrics on reg.
func NewLLMMetrics(reg prometheus.Registerer) *LLMMetrics {
	m := &LLMMetrics{
		tokens: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "cepjobs_llm_tokens_total", Help: "Tokens used, by model and direction (in, out)."}, []string{"model", "direction"}),
		cost:   prometheus.NewCounterVec(prometheus.CounterOpts{Name: "cepjobs_llm_cost_usd_total", Help: "Spending on model calls, USD, by model."}, []string{"model"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "cepjobs_llm_generation_duration_seconds", Help: "Time to generate one job's content (all calls), by kind.",
			Buckets: []float64{.5, 1, 2, 5, 10, 20, 40, 60, 120, 300}}, []string{"kind"}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "cepjobs_llm_failures_total", Help: "Failed generation attempts by reason: budget, throttled, transient, permanent, invalid_output, cancelled."}, []string{"reason"}),
		jobs:     prometheus.NewCounterVec(prometheus.CounterOpts{Name: "cepjobs_content_jobs_total", Help: "Finished content jobs by kind and status."}, []string{"kind", "status"}),
	}
	reg.MustRegister(m.tokens, m.cost, m.latency, m.failures, m.jobs)
	return m
}
