package fleet

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/hibiken/asynq"
	"github.com/hibiken/asynq/x/metrics"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/redis/go-redis/v9"

	"github.com/cepcomunicacion/cepjobs/internal/outbox"
	"github.com/cepcomunicacion/cepjobs/internal/redisconn"
	"github.com/cepcomunicacion/cepjobs/store"
)

// WorkerConfig is the part of a worker's configuration asynq needs.
type WorkerConfig struct {
	Concurrency       int
	Queues            map[string]int
	MetricsAddr       string
	ShutdownTimeout   time.Duration
	TaskCheckInterval time.Duration
	// FetchLanes is how many asynq servers split Concurrency (lanes.go);
	// 0 means one.
	FetchLanes int
}

// Worker is a worker process's asynq servers (its fetch lanes), with its
// task middleware, metrics and health endpoint.
type Worker struct {
	name     string
	log      *slog.Logger
	lanes    []*asynq.Server
	mux      *asynq.ServeMux
	tasks    *taskMetrics
	reg      *prometheus.Registry
	listener net.Listener
	closers  []func()
}

// newWorker builds the asynq servers; mux comes from the handlers package.
func newWorker(name string, wc WorkerConfig, opt asynq.RedisConnOpt, log *slog.Logger, reg *prometheus.Registry) (*Worker, error) {
	w := &Worker{name: name, log: log, reg: reg, tasks: newTaskMetrics(reg)}
	if wc.MetricsAddr != "" {
		l, err := net.Listen("tcp", wc.MetricsAddr)
		if err != nil {
			return nil, fmt.Errorf("start %s: listen for metrics on %s: %w", name, wc.MetricsAddr, err)
		}
		w.listener = l
	}
	w.lanes = newLanes(opt, WorkerServerConfig(wc, log), wc.FetchLanes)
	return w, nil
}

// MetricsAddr is where /metrics and /healthz answer ("" when off).
func (w *Worker) MetricsAddr() string {
	if w.listener == nil {
		return ""
	}
	return w.listener.Addr().String()
}

// Run processes tasks until ctx ends, then shuts down: every lane stops
// fetching, waits up to ShutdownTimeout for its in-flight tasks, and hands
// back the rest for another worker.
func (w *Worker) Run(ctx context.Context) error {
	defer func() {
		for _, c := range w.closers {
			c()
		}
	}()
	if err := startLanes(w.lanes, w.tasks.wrap(w.mux, w.log)); err != nil {
		return fmt.Errorf("start %s: %w", w.name, err)
	}
	var hs *http.Server
	errc := make(chan error, 1)
	if w.listener != nil {
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", promhttp.HandlerFor(w.reg, promhttp.HandlerOpts{}))
		mux.HandleFunc("GET /healthz", func(rw http.ResponseWriter, _ *http.Request) {
			rw.Header().Set("Content-Type", "application/json")
			fmt.Fprintln(rw, `{"status":"ok"}`)
		})
		hs = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
		go func() { errc <- hs.Serve(w.listener) }()
	}
	w.log.Info("worker started", "metrics", w.MetricsAddr(), "fetch_lanes", len(w.lanes))
	select {
	case <-ctx.Done():
	case err := <-errc:
		shutdownLanes(w.lanes)
		return fmt.Errorf("%s metrics server: %w", w.name, err)
	}
	w.log.Info("shutting down: waiting for in-flight tasks")
	shutdownLanes(w.lanes)
	if hs != nil {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := hs.Shutdown(sctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
			return err
		}
	}
	w.log.Info("worker stopped")
	return nil
}

// baseDeps are the connections every worker opens.
type baseDeps struct {
	store  *store.Store
	opt    asynq.RedisConnOpt
	redis  redis.UniversalClient
	client *asynq.Client
	reg    *prometheus.Registry
	// dispatch is shared by every handler of the process that writes
	// outbox rows: one set of outbox metrics per registry.
	dispatch *outbox.Dispatcher
}

// dispatcher returns the process's outbox dispatcher, made on first use.
func (b *baseDeps) dispatcher(log *slog.Logger) *outbox.Dispatcher {
	if b.dispatch == nil {
		b.dispatch = outbox.NewDispatcher(b.store, b.client, log, outbox.NewMetrics(b.reg), nil)
	}
	return b.dispatch
}

func openBase(ctx context.Context, dbCfg store.Config, redisURL string) (*baseDeps, error) {
	b := &baseDeps{}
	var err error
	b.opt, err = redisconn.Parse(redisURL)
	if err != nil {
		return nil, fmt.Errorf("REDIS_URL: %w", err)
	}
	b.store, err = store.Open(ctx, dbCfg)
	if err != nil {
		return nil, err
	}
	b.redis = redisconn.Client(b.opt)
	b.client = asynq.NewClientFromRedisClient(b.redis)
	b.reg = prometheus.NewRegistry()
	b.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	inspector := asynq.NewInspectorFromRedisClient(b.redis)
	b.reg.MustRegister(metrics.NewQueueMetricsCollector(inspector))
	return b, nil
}

func (b *baseDeps) close() {
	if b.dispatch != nil {
		b.dispatch.Close() // records the last dispatched marks
	}
	if b.client != nil {
		_ = b.client.Close()
	}
	if b.redis != nil {
		_ = b.redis.Close()
	}
	if b.store != nil {
		b.store.Close()
	}
}
