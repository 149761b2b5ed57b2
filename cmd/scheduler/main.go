// Command scheduler turns the schedule table (nightly backup, daily maintenance)
// into tasks, each slot once however many replicas run.
package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/cepcomunicacion/cepjobs/internal/config"
	"github.com/cepcomunicacion/cepjobs/internal/fleet"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args, os.Environ(), os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "scheduler:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args, environ []string, stdout, stderr io.Writer) error {
	return fleet.RunCommand(ctx, "scheduler", args, environ, stdout, stderr,
		func(ctx context.Context, cfg config.Config, log *slog.Logger) (fleet.Runner, error) {
			return fleet.NewScheduler(ctx, cfg, log)
		})
}
