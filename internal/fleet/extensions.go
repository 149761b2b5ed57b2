package fleet

import (
	"log/slog"

	"github.com/hibiken/asynq"

	"github.com/cepcomunicacion/cepjobs/internal/config"
	"github.com/cepcomunicacion/cepjobs/internal/ratelimit"
)

// automationExtras are what the worker-automation extensions get.
type automationExtras struct {
	mux     *asynq.ServeMux
	base    *baseDeps
	cfg     config.Config
	log     *slog.Logger
	limiter *ratelimit.Limiter
}

// statsExtras are what the worker-stats extensions get.
type statsExtras struct {
	mux  *asynq.ServeMux
	base *baseDeps
	cfg  config.Config
	log  *slog.Logger
}
