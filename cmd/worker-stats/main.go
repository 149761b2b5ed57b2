// Command worker-stats runs backups (pg_dump streamed into object storage, then
// retention) and maintenance, from the backup, stats and low queues.
package main

import (
	"context"
	"log/slog"
	"os"

	"github.com/cepcomunicacion/cepjobs/internal/config"
	"github.com/cepcomunicacion/cepjobs/internal/fleet"
)

func main() {
	os.Exit(fleet.Main("worker-stats", func(ctx context.Context, cfg config.Config, log *slog.Logger) (fleet.Runner, error) {
		return fleet.NewStatsWorker(ctx, cfg, log)
	}))
}
