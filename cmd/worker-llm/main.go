// Command worker-llm generates AI content (course descriptions, Meta ad copy,
// email copy) through an OpenAI-compatible API, from the llm queue.
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
		fmt.Fprintln(os.Stderr, "worker-llm:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args, environ []string, stdout, stderr io.Writer) error {
	return fleet.RunCommand(ctx, "worker-llm", args, environ, stdout, stderr,
		func(ctx context.Context, cfg config.Config, log *slog.Logger) (fleet.Runner, error) {
			return fleet.NewLLMWorker(ctx, cfg, log)
		})
}
