// Command scheduler turns the schedule table (nightly backup, daily maintenance)
// into tasks, each slot once however many replicas run.
package main

import (
	"context"
	"log/slog"
	"os"

	"github.com/cepcomunicacion/cepjobs/internal/config"
	"github.com/cepcomunicacion/cepjobs/internal/fleet"
)

func main() {
	os.Exit(fleet.Main("scheduler", func(ctx context.Context, cfg config.Config, log *slog.Logger) (fleet.Runner, error) {
		return fleet.NewScheduler(ctx, cfg, log)
	}))
}
