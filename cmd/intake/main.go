// Command intake serves the cepjobs HTTP API, the asynqmon dashboard under
// /monitoring, /metrics and the health probes, and relays the outbox.
package main

import (
	"context"
	"log/slog"
	"os"
	"runtime/debug"

	"github.com/cepcomunicacion/cepjobs/internal/config"
	"github.com/cepcomunicacion/cepjobs/internal/fleet"
)

// gcPercent is the intake's GOGC unless the environment sets one. Under
// load it allocates ~15 KB per request around a live heap of a few MB, so at
// Go's default of 100 it runs several collections a second, ~9 % of its CPU
// in the intake benchmark's profile; 200 collects half as often for a heap a
// few MB larger. (400 took a little more CPU off, but its heap took long
// enough to level off that the soak test's leak check saw a climb.)
const gcPercent = 200

func main() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(gcPercent)
	}
	os.Exit(fleet.Main("intake", func(ctx context.Context, cfg config.Config, log *slog.Logger) (fleet.Runner, error) {
		return fleet.NewIntake(ctx, cfg, log)
	}))
}
