// Command worker-llm generates AI content (course descriptions, Meta ad copy,
// email copy) through an OpenAI-compatible API, from the llm queue.
package main

import (
	"context"
	"log/slog"
	"os"

	"github.com/cepcomunicacion/cepjobs/internal/config"
	"github.com/cepcomunicacion/cepjobs/internal/fleet"
)

func main() {
	os.Exit(fleet.Main("worker-llm", func(ctx context.Context, cfg config.Config, log *slog.Logger) (fleet.Runner, error) {
		return fleet.NewLLMWorker(ctx, cfg, log)
	}))
}
