// Command intake serves the cepjobs HTTP API, the asynqmon dashboard under
// /monitoring, /metrics and the health probes, and relays the outbox.
package main

import (
	"context"
	"log/slog"
	"os"

	"github.com/cepcomunicacion/cepjobs/internal/config"
	"github.com/cepcomunicacion/cepjobs/internal/fleet"
)

func main() {
	os.Exit(fleet.Main("intake", func(ctx context.Context, cfg config.Config, log *slog.Logger) (fleet.Runner, error) {
		return fleet.NewIntake(ctx, cfg, log)
	}))
}
