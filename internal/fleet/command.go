package fleet

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/cepcomunicacion/cepjobs/internal/config"
	"github.com/cepcomunicacion/cepjobs/internal/logbuf"
	"github.com/cepcomunicacion/cepjobs/internal/version"
)

// Runner is a process that runs until its context ends.
type Runner interface {
	Run(ctx context.Context) error
}

// RunCommand is the body of every fleet binary's run: --version, then the
// configuration (every problem at once), the logger, the process, and Run
// until ctx ends.
func RunCommand(ctx context.Context, name string, args, environ []string, stdout, stderr io.Writer,
	build func(context.Context, config.Config, *slog.Logger) (Runner, error)) error {
	if len(args) > 1 {
		switch args[1] {
		case "--version", "-version", "version":
			fmt.Fprintln(stdout, name, version.String())
			return nil
		default:
			return fmt.Errorf("unknown argument %q: %s takes no arguments, only environment variables (see README)", args[1], name)
		}
	}
	cfg, err := config.Load(environ)
	if err != nil {
		return err
	}
	// Lines go out in batches (at most logbuf.FlushDelay late), warnings
	// and errors at once, the rest when the process ends.
	lw := logbuf.New(stderr)
	defer lw.Close()
	log := slog.New(logbuf.FlushOn(cfg.Logger(lw).Handler(), lw, slog.LevelWarn)).With("process", name)
	if cfg.Log.PprofAddr != "" {
		stopPprof, err := servePprof(cfg.Log.PprofAddr, log)
		if err != nil {
			return err
		}
		defer stopPprof()
	}
	r, err := build(ctx, cfg, log)
	if err != nil {
		return err
	}
	return r.Run(ctx)
}

// servePprof serves net/http/pprof on addr (validated as loopback by the
// config) until the returned function is called.
func servePprof(addr string, log *slog.Logger) (func(), error) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("CEPJOBS_PPROF_ADDR: listen on %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(l) }()
	log.Info("pprof listening", "addr", l.Addr().String())
	return func() { _ = srv.Close() }, nil
}

// Main is the whole main of a fleet binary: it runs the process until
// SIGINT or SIGTERM and returns the exit code (main passes it to os.Exit).
func Main(name string, build func(context.Context, config.Config, *slog.Logger) (Runner, error)) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := RunCommand(ctx, name, os.Args, os.Environ(), os.Stdout, os.Stderr, build); err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
		return 1
	}
	return 0
}
