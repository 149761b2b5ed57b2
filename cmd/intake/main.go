// Command intake serves the cepjobs HTTP API, the asynqmon dashboard under
// /monitoring, /metrics and the health probes, and relays the outbox.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/cepcomunicacion/cepjobs/internal/config"
	"github.com/cepcomunicacion/cepjobs/internal/fleet"
	"github.com/cepcomunicacion/cepjobs/internal/version"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args, os.Environ(), os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "intake:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args, environ []string, stdout, stderr io.Writer) error {
	if len(args) > 1 {
		switch args[1] {
		case "--version", "-version", "version":
			fmt.Fprintln(stdout, "intake", version.String())
			return nil
		default:
			return fmt.Errorf("unknown argument %q: intake takes no arguments, only environment variables (see README)", args[1])
		}
	}
	cfg, err := config.Load(environ)
	if err != nil {
		return err
	}
	log := cfg.Logger(stderr).With("process", "intake")
	in, err := fleet.NewIntake(ctx, cfg, log)
	if err != nil {
		return err
	}
	return in.Run(ctx)
}
