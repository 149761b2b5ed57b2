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

// newSweeper builds the intake's lead sweep. It runs next to the relay: the
// relay sends the outbox rows Redis refused, the sweep the tasks of leads
// still queued past CEPJOBS_SWEEP_AFTER that are not in Redis (lost by
// Redis after taking them, or never sent because the intake died between
// commit and enqueue).
func newSweeper(c config.OutboxConfig, st *store.Store, rc redis.UniversalClient, client *asynq.Client, log *slog.Logger, reg prometheus.Registerer) *outbox.Sweeper {
	return outbox.NewSweeper(outbox.SweepConfig{After: c.SweepAfter, Interval: c.SweepInterval, Batch: c.SweepBatch},
		st, rc, client, log, outbox.NewSweepMetrics(reg), nil)
}
