// Command worker-automation processes lead fan-out and deliveries
// (Mailchimp, welcome email, Meta Conversions API, WhatsApp) and
// transactional email, from the critical and default queues.
package main

import (
	"context"
	"log/slog"
	"os"

	"github.com/cepcomunicacion/cepjobs/internal/config"
	"github.com/cepcomunicacion/cepjobs/internal/fleet"
)

func main() {
	os.Exit(fleet.Main("worker-automation", func(ctx context.Context, cfg config.Config, log *slog.Logger) (fleet.Runner, error) {
		return fleet.NewAutomationWorker(ctx, cfg, log)
	}))
}
