package fleet

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/cepcomunicacion/cepjobs/handlers"
	"github.com/cepcomunicacion/cepjobs/internal/config"
	"github.com/cepcomunicacion/cepjobs/internal/llm"
	"github.com/cepcomunicacion/cepjobs/tasks"
)

// ErrNoLLMKey: worker-llm cannot do anything without an API key.
var ErrNoLLMKey = errors.New("OPENAI_API_KEY is not set: worker-llm needs the key of OpenAI or of an OpenAI-compatible endpoint (OPENAI_BASE_URL, e.g. Anthropic's compatibility endpoint or a local Ollama at http://localhost:11434/v1 with any key)")

// NewLLMWorker assembles worker-llm: queue llm, AI content jobs and their
// callbacks. Without an API key it refuses to start.
func NewLLMWorker(ctx context.Context, cfg config.Config, log *slog.Logger) (_ *Worker, err error) {
	if !cfg.LLM.Enabled() {
		return nil, ErrNoLLMKey
	}
	gen, err := llm.New(cfg.LLM, nil, log)
	if err != nil {
		return nil, fmt.Errorf("start worker-llm: %w", err)
	}
	b, err := openBase(ctx, cfg.Store, cfg.Redis.URL)
	if err != nil {
		return nil, fmt.Errorf("start worker-llm: %w", err)
	}
	defer func() {
		if err != nil {
			b.close()
		}
	}()
	if cfg.LLMWorker.CallbackSecret == "" {
		log.Warn("CEPJOBS_CALLBACK_SECRET is not set: jobs with a callback_url will have their callback fail instead of being sent unsigned")
	}
	w, err := newWorker("worker-llm", WorkerConfig{
		Concurrency:       cfg.LLMWorker.Concurrency,
		Queues:            map[string]int{tasks.QueueLLM: 1},
		MetricsAddr:       cfg.LLMWorker.MetricsAddr,
		ShutdownTimeout:   cfg.Automation.ShutdownTimeout,
		TaskCheckInterval: cfg.Automation.TaskCheckInterval,
	}, b.opt, log, b.reg)
	if err != nil {
		return nil, err
	}
	w.mux = handlers.NewLLM(handlers.LLMDeps{
		Store: b.store, Generator: gen, Dispatch: b.dispatcher(log),
		DailyBudgetUSD: cfg.LLM.DailyBudgetUSD, CallbackSecret: cfg.LLMWorker.CallbackSecret,
		Logger: log, Metrics: handlers.NewLLMMetrics(b.reg),
	})
	w.closers = append(w.closers, b.close)
	log.Info("llm on", "model", gen.Model(), "daily_budget_usd", cfg.LLM.DailyBudgetUSD)
	return w, nil
}
