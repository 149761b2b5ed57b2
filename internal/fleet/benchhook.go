package fleet

import (
	"context"
	"log/slog"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/cepcomunicacion/cepjobs/handlers"
	"github.com/cepcomunicacion/cepjobs/internal/config"
)

// WorkerServerConfig is the asynq.Config every fleet worker's servers are
// built with (newWorker uses it for each fetch lane).
func WorkerServerConfig(wc WorkerConfig, log *slog.Logger) asynq.Config {
	return asynq.Config{
		Concurrency:       wc.Concurrency,
		Queues:            wc.Queues,
		RetryDelayFunc:    handlers.RetryDelay,
		IsFailure:         handlers.IsFailure,
		ShutdownTimeout:   wc.ShutdownTimeout,
		TaskCheckInterval: wc.TaskCheckInterval,
		Logger:            asynqLogger{log},
		LogLevel:          asynq.WarnLevel,
		ErrorHandler: asynq.ErrorHandlerFunc(func(ctx context.Context, t *asynq.Task, err error) {
			// Our errors carry ids and vendor error names only, never
			// personal data, so they are safe to log and to show in the
			// dashboard (asynq stores them as the task's last error).
			id, _ := asynq.GetTaskID(ctx)
			retried, _ := asynq.GetRetryCount(ctx)
			maxRetry, _ := asynq.GetMaxRetry(ctx)
			level := slog.LevelWarn
			if handlers.IsThrottled(err) {
				level = slog.LevelDebug
			}
			log.Log(ctx, level, "task failed", "task_type", t.Type(), "task_id", id, "retried", retried, "max_retry", maxRetry, "err", err)
		}),
	}
}

// BenchAutomationWorker builds worker-automation's task-processing side
// exactly as NewAutomationWorker does — its WorkerConfig from cfg, the
// server config, the fetch lanes, the task middleware and metrics — around
// mux instead of the real handlers, with no metrics listener and no
// PostgreSQL. It is for the queue benchmark (bench/queue); Run it as the
// real worker.
func BenchAutomationWorker(cfg config.Config, opt asynq.RedisConnOpt, log *slog.Logger, mux *asynq.ServeMux) (*Worker, error) {
	wc := automationWorkerConfig(cfg)
	wc.MetricsAddr = ""
	w, err := newWorker("worker-automation", wc, opt, log, prometheus.NewRegistry())
	if err != nil {
		return nil, err
	}
	w.mux = mux
	return w, nil
}
