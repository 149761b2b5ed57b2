package fleet

import (
	"log/slog"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/cepcomunicacion/cepjobs/internal/config"
	"github.com/cepcomunicacion/cepjobs/internal/outbox"
	"github.com/cepcomunicacion/cepjobs/store"
)

// newSweeper builds the intake's lead sweep, or nil when it is off
// (CEPJOBS_SWEEP_AFTER=0). It runs next to the relay: the relay sends what
// never reached Redis, the sweep what Redis lost after taking it.
func newSweeper(c config.OutboxConfig, st *store.Store, rc redis.UniversalClient, client *asynq.Client, log *slog.Logger, reg prometheus.Registerer) *outbox.Sweeper {
	if c.SweepAfter <= 0 {
		return nil
	}
	return outbox.NewSweeper(outbox.SweepConfig{After: c.SweepAfter, Interval: c.SweepInterval, Batch: c.SweepBatch},
		st, rc, client, log, outbox.NewSweepMetrics(reg), nil)
}
