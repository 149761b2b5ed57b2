// Command worker-automation processes lead fan-out and deliveries
// (Mailchimp, welcome email, Meta Conversions API, WhatsApp) and
// transactional email, from the critical and default queues.
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
		fmt.Fprintln(os.Stderr, "worker-automation:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args, environ []string, stdout, stderr io.Writer) error {
	if len(args) > 1 {
		switch args[1] {
		case "--version", "-version", "version":
			fmt.Fprintln(stdout, "worker-automation", version.String())
			return nil
		default:
			return fmt.Errorf("unknown argument %q: worker-automation takes no arguments, only environment variables (see README)", args[1])
		}
	}
	cfg, err := config.Load(environ)
	if err != nil {
		return err
	}
	log := cfg.Logger(stderr).With("process", "worker-automation")
	w, err := fleet.NewAutomationWorker(ctx, cfg, log)
	if err != nil {
		return err
	}
	return w.Run(ctx)
}
