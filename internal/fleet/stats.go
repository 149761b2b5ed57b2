package fleet

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/cepcomunicacion/cepjobs/handlers"
	"github.com/cepcomunicacion/cepjobs/internal/backup"
	"github.com/cepcomunicacion/cepjobs/internal/config"
	"github.com/cepcomunicacion/cepjobs/tasks"
)

// NewStatsWorker assembles worker-stats: backups (queue backup) and
// maintenance (queue low), with stats roll-ups, reports and exports to come
// (queue stats).
func NewStatsWorker(ctx context.Context, cfg config.Config, log *slog.Logger) (_ *Worker, err error) {
	b, err := openBase(ctx, cfg.Store, cfg.Redis.URL)
	if err != nil {
		return nil, fmt.Errorf("start worker-stats: %w", err)
	}
	defer func() {
		if err != nil {
			b.close()
		}
	}()
	metrics := handlers.NewBackupMetrics(b.reg)
	var bk *backup.Backups
	if cfg.Backup.Enabled() {
		if bk, err = backup.New(cfg.Backup, log); err != nil {
			return nil, fmt.Errorf("start worker-stats: %w", err)
		}
		db, err := backup.DatabaseName(cfg.BackupDatabaseURL())
		if err == nil {
			lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			if last, err := bk.Latest(lctx, db); err == nil {
				metrics.SetLast(last.Time, last.Size)
			} else if !errors.Is(err, backup.ErrNotFound) {
				log.Warn("object storage does not answer yet", "err", err)
			}
			cancel()
		}
		log.Info("backups on", "bucket", cfg.Backup.Bucket, "retention", cfg.Backup.Retention.String(), "keep_min", cfg.Backup.KeepMin)
	} else {
		log.Warn("backups off: set S3_ENDPOINT, S3_ACCESS_KEY and S3_SECRET_KEY")
	}
	dispatch := b.dispatcher(log)
	sc := cfg.Stats
	w, err := newWorker("worker-stats", WorkerConfig{
		Concurrency:       sc.Concurrency,
		Queues:            map[string]int{tasks.QueueBackup: 3, tasks.QueueStats: 2, tasks.QueueLow: 1},
		MetricsAddr:       sc.MetricsAddr,
		ShutdownTimeout:   cfg.Automation.ShutdownTimeout,
		TaskCheckInterval: cfg.Automation.TaskCheckInterval,
	}, b.opt, log, b.reg)
	if err != nil {
		return nil, err
	}
	deps := handlers.StatsDeps{
		Store: b.store, Dispatch: dispatch, DatabaseURL: cfg.BackupDatabaseURL(), OpsEmail: sc.OpsEmail, LeadRetention: sc.LeadRetention,
		Logger: log, Metrics: metrics,
	}
	if bk != nil {
		deps.Backups = bk
	}
	w.mux = handlers.NewStats(deps)
	x := statsExtras{mux: w.mux, base: b, cfg: cfg, log: log}
	for _, add := range []func(statsExtras) error{addMetaInsights, addExports, addReport} {
		if err := add(x); err != nil {
			return nil, fmt.Errorf("start worker-stats: %w", err)
		}
	}
	w.closers = append(w.closers, b.close)
	return w, nil
}
