// Package fleet assembles the cepjobs processes from their parts, so each
// binary under cmd/ and the all-in-one `cepjobs dev` share one wiring.
package fleet

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/redis/go-redis/v9"

	"github.com/cepcomunicacion/cepjobs/api"
	"github.com/cepcomunicacion/cepjobs/internal/backup"
	"github.com/cepcomunicacion/cepjobs/internal/config"
	"github.com/cepcomunicacion/cepjobs/internal/hcaptcha"
	"github.com/cepcomunicacion/cepjobs/internal/outbox"
	"github.com/cepcomunicacion/cepjobs/internal/redisconn"
	"github.com/cepcomunicacion/cepjobs/store"
)

// enqueueSenders is how many pipelines of enqueues may be in flight at
// once. Few: batches form while every sender waits on Redis, and one
// round trip carries a whole batch.
const enqueueSenders = 2

// Intake is the intake process: HTTP API, dashboard, outbox relay.
type Intake struct {
	cfg      config.Config
	log      *slog.Logger
	store    *store.Store
	redis    redis.UniversalClient
	enqRedis redis.UniversalClient // the asynq client's, auto-pipelined
	autopipe *redisconn.AutoPipeline
	client   *asynq.Client
	server   *api.Server
	relay    *outbox.Relay
	dispatch *outbox.Dispatcher
	sweep    *outbox.Sweeper
	listener net.Listener
}

type redisPinger struct{ c redis.UniversalClient }

func (p redisPinger) Ping(ctx context.Context) error { return redisconn.Ping(ctx, p.c, time.Second) }

// NewIntake connects to Postgres (and applies migrations), prepares the
// Redis client and binds the listen address. Redis need not answer yet: the
// outbox holds what it cannot take.
func NewIntake(ctx context.Context, cfg config.Config, log *slog.Logger) (_ *Intake, err error) {
	in := &Intake{cfg: cfg, log: log}
	defer func() {
		if err != nil {
			in.close()
		}
	}()
	in.store, err = store.Open(ctx, cfg.Store)
	if err != nil {
		return nil, err
	}
	if err := in.store.Ping(ctx); err != nil {
		return nil, fmt.Errorf("start intake: postgres at %s does not answer: %w", config.RedactURL(cfg.Store.URL), err)
	}
	v, err := in.store.Migrate(ctx)
	if err != nil {
		return nil, fmt.Errorf("start intake: %w", err)
	}
	log.Info("database ready", "schema_version", v)

	opt, err := redisconn.Parse(cfg.Redis.URL)
	if err != nil {
		return nil, fmt.Errorf("start intake: REDIS_URL: %w", err)
	}
	in.redis = redisconn.Client(opt)
	if err := outbox.AnnounceQueues(ctx, in.redis); err != nil {
		log.Warn("redis does not answer yet; leads are accepted and kept in the outbox until it does", "redis", redisconn.Redact(cfg.Redis.URL), "err", err)
	}
	// Enqueues get a client of their own whose commands concurrent requests
	// share pipelines on: one round trip for every lead that reached the
	// enqueue at the same moment (docs/design.md, "Enqueue").
	in.enqRedis = redisconn.Client(opt)
	in.autopipe = redisconn.NewAutoPipeline(in.enqRedis, enqueueSenders)
	in.client = asynq.NewClientFromRedisClient(in.enqRedis)

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	reg.MustRegister(outbox.NewBacklogCollector(in.store))
	dispatch := outbox.NewDispatcher(in.store, in.client, log, outbox.NewMetrics(reg), nil)
	in.dispatch = dispatch
	dispatch.OnRecovery(func(ctx context.Context) {
		if err := outbox.AnnounceQueues(ctx, in.redis); err != nil {
			log.Warn("announce queues", "err", err)
		}
	})
	in.relay = outbox.NewRelay(dispatch, cfg.Outbox.Interval, cfg.Outbox.Batch)
	in.sweep = newSweeper(cfg.Outbox, in.store, in.redis, in.client, log, reg)

	var captcha *hcaptcha.Verifier
	if cfg.Captcha.Enabled() {
		captcha = hcaptcha.New(cfg.Captcha, nil)
	}
	deps := api.Deps{
		Config: cfg.API, Store: in.store, Dispatch: dispatch, Redis: redisPinger{in.redis},
		RedisConnOpt: opt, Logger: log, Registry: reg,
	}
	if captcha != nil {
		deps.Captcha = captcha
	}
	if !cfg.Mandrill.Enabled() {
		deps.CampaignMailOff = "campaign email goes through Mailchimp Transactional: set MANDRILL_API_KEY and MANDRILL_FROM"
	}
	if cfg.Backup.Enabled() {
		bk, err := backup.New(cfg.Backup, log)
		if err != nil {
			return nil, fmt.Errorf("start intake: %w", err)
		}
		if deps.BackupDatabase, err = backup.DatabaseName(cfg.BackupDatabaseURL()); err != nil {
			return nil, fmt.Errorf("start intake: backup database: %w", err)
		}
		deps.Backups = bk
	}
	in.server, err = api.NewServer(deps)
	if err != nil {
		return nil, err
	}
	if len(cfg.API.Tokens) == 0 {
		log.Warn("no API tokens configured (CEPJOBS_API_TOKENS): every /v1 request will be refused with 401")
	}
	in.listener, err = net.Listen("tcp", cfg.API.Addr)
	if err != nil {
		return nil, fmt.Errorf("start intake: listen on %s: %w", cfg.API.Addr, err)
	}
	return in, nil
}

// Addr is the address the API listens on (useful with port 0).
func (in *Intake) Addr() string { return in.listener.Addr().String() }

// Run serves until ctx ends, then shuts down gracefully: /readyz fails at
// once, the listener closes, in-flight requests finish (bounded by
// CEPJOBS_SHUTDOWN_TIMEOUT), the relay stops, connections close.
func (in *Intake) Run(ctx context.Context) error {
	defer in.close()
	srv := &http.Server{
		Handler:           in.server,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       15 * time.Second,
		WriteTimeout:      in.cfg.API.RequestTimeout + 5*time.Second,
		IdleTimeout:       90 * time.Second,
		ErrorLog:          slog.NewLogLogger(in.log.Handler(), slog.LevelWarn),
		BaseContext:       func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
	}
	relayCtx, stopRelay := context.WithCancel(context.WithoutCancel(ctx))
	var wg sync.WaitGroup
	wg.Go(func() { in.relay.Run(relayCtx) })
	wg.Go(func() { in.announceQueues(relayCtx) })
	wg.Go(func() { in.sweep.Run(relayCtx) })
	defer func() {
		stopRelay()
		wg.Wait()
	}()

	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(in.listener) }()
	in.log.Info("intake listening", "addr", in.Addr())

	select {
	case err := <-errc:
		return fmt.Errorf("serve http: %w", err)
	case <-ctx.Done():
	}
	in.log.Info("shutting down: finishing in-flight requests", "timeout", in.cfg.API.ShutdownTimeout.String())
	in.server.Drain()
	sctx, cancel := context.WithTimeout(context.Background(), in.cfg.API.ShutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		_ = srv.Close()
		return fmt.Errorf("shutdown http: %w", err)
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve http: %w", err)
	}
	in.log.Info("intake stopped")
	return nil
}

// announceQueues keeps the queue list in Redis even if Redis restarts empty
// while no enqueue fails (see outbox.AnnounceQueues).
func (in *Intake) announceQueues(ctx context.Context) {
	t := time.NewTicker(30 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := outbox.AnnounceQueues(ctx, in.redis); err != nil && ctx.Err() == nil {
				in.log.Debug("announce queues", "err", err)
			}
		}
	}
}

func (in *Intake) close() {
	if in.server != nil {
		_ = in.server.Close()
	}
	if in.dispatch != nil {
		in.dispatch.Close() // records the last dispatched marks
	}
	if in.client != nil {
		_ = in.client.Close()
	}
	if in.autopipe != nil {
		in.autopipe.Close()
	}
	if in.enqRedis != nil {
		_ = in.enqRedis.Close()
	}
	if in.redis != nil {
		_ = in.redis.Close()
	}
	if in.store != nil {
		in.store.Close()
	}
	if in.listener != nil {
		_ = in.listener.Close()
	}
}
