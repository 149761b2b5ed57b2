package fleet

import (
	"context"
	"log/slog"

	"github.com/hibiken/asynq"

	"github.com/cepcomunicacion/cepjobs/handlers"
)

// WorkerServerConfig is the asynq.Config every fleet worker's server is
// built with (newWorker uses it). It is exported for the queue benchmark
// (bench/queue), so the harness runs exactly our retry policy, failure
// classification, error handler, logger and fetch settings around a no-op
// handler of its own.
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
