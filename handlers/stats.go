package handlers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/cepcomunicacion/cepjobs/internal/backup"
	"github.com/cepcomunicacion/cepjobs/store"
	"github.com/cepcomunicacion/cepjobs/tasks"
)

// backups is what the backup handler needs of *backup.Backups.
type backups interface {
	Run(ctx context.Context, databaseURL string, now time.Time, progress func(backup.Progress)) (backup.Result, error)
	Prune(ctx context.Context, db string, now time.Time) ([]string, error)
}

// statsStore is what worker-stats needs of the database.
type statsStore interface {
	Purge(ctx context.Context, now time.Time, keysOlder, outboxOlder, emailsOlder time.Duration) (store.PurgeResult, error)
	AnonymiseOlderThan(ctx context.Context, cutoff, now time.Time) (int64, error)
	RollupDay(ctx context.Context, day, now time.Time) (int64, error)
	QueueEmail(ctx context.Context, e store.Email, now time.Time, taskType string, payload func(string) ([]byte, error)) (string, string, error)
}

// outboxDispatcher sends a freshly written outbox row to Redis.
type outboxDispatcher interface {
	Now(ctx context.Context, id, taskType string, payload []byte)
}

// StatsDeps wires worker-stats.
type StatsDeps struct {
	Store    statsStore
	Dispatch outboxDispatcher
	// Backups is nil when object storage is not configured.
	Backups backups
	// DatabaseURL is the database backed up.
	DatabaseURL string
	// OpsEmail receives an alert when a backup fails; empty for none.
	OpsEmail string
	// LeadRetention anonymises leads older than this in the daily purge
	// (RGPD); 0 keeps them.
	LeadRetention time.Duration
	Logger        *slog.Logger
	Metrics       *BackupMetrics
	Now           func() time.Time
}

// Stats handles backup:database and maintenance:purge (stats roll-ups,
// reports and exports join it).
type Stats struct{ d StatsDeps }

// NewStats returns worker-stats' mux.
func NewStats(d StatsDeps) *asynq.ServeMux {
	if d.Now == nil {
		d.Now = time.Now
	}
	s := &Stats{d: d}
	mux := asynq.NewServeMux()
	mux.HandleFunc(tasks.TypeBackupDatabase, s.backupDatabase)
	mux.HandleFunc(tasks.TypeMaintenancePurge, s.purge)
	mux.HandleFunc(tasks.TypeStatsRollup, s.rollup)
	return mux
}

// Handled lists the task types some worker handles; the scheduler enqueues
// only these, so no scheduled task waits for a handler that does not exist.
var Handled = map[string]bool{
	tasks.TypeLeadProcess: true, tasks.TypeLeadDeliver: true, tasks.TypeEmailSend: true,
	tasks.TypeBackupDatabase: true, tasks.TypeMaintenancePurge: true,
	tasks.TypeContentGenerate: true, tasks.TypeContentCallback: true,
	tasks.TypeLeadErase: true, tasks.TypeStatsRollup: true, tasks.TypeCampaignSyncMeta: true,
	tasks.TypeExportLeads: true,
	tasks.TypeStatsReport: true,
}

// BackupResult is what a backup task writes as its asynq result (shown in
// the dashboard, read by `cepjobs backup now`).
type BackupResult struct {
	Key      string           `json:"key"`
	Size     int64            `json:"size"`
	SHA256   string           `json:"sha256"`
	Duration string           `json:"duration"`
	Tables   int              `json:"tables"`
	Pruned   []string         `json:"pruned,omitempty"`
	Rows     map[string]int64 `json:"-"`
}

func (s *Stats) backupDatabase(ctx context.Context, t *asynq.Task) error {
	p, err := tasks.Decode[tasks.BackupDatabase](t)
	if err != nil {
		return err
	}
	if s.d.Backups == nil {
		return fmt.Errorf("backup %s: object storage not configured (set S3_ENDPOINT, S3_ACCESS_KEY, S3_SECRET_KEY): %w", p.Slot.Format(time.RFC3339), asynq.SkipRetry)
	}
	start := s.d.Now()
	res, err := s.d.Backups.Run(ctx, s.d.DatabaseURL, start, func(pr backup.Progress) {
		s.d.Logger.Debug("backup progress", "step", pr.Step, "bytes", pr.Bytes, "elapsed", pr.Elapsed.String())
	})
	if err != nil {
		s.d.Metrics.failures.Inc()
		permanent := errors.Is(err, backup.ErrClientTooOld) || errors.Is(err, backup.ErrNotConfigured)
		final, _ := finalAttempt(ctx, err)
		if permanent || final {
			s.alert(ctx, p.Slot, err)
		}
		if permanent {
			return fmt.Errorf("backup: %w: %w", err, asynq.SkipRetry)
		}
		return fmt.Errorf("backup: %w", err)
	}
	s.d.Metrics.lastSuccess.Set(float64(s.d.Now().Unix()))
	s.d.Metrics.lastDuration.Set(res.Duration.Seconds())
	s.d.Metrics.lastSize.Set(float64(res.Size))

	out := BackupResult{Key: res.Key, Size: res.Size, SHA256: res.SHA256, Duration: res.Duration.Round(time.Millisecond).String(), Tables: len(res.Tables)}
	// Retention only after a success: a run of failures never eats into
	// the backups that exist.
	deleted, err := s.d.Backups.Prune(ctx, res.Database, s.d.Now())
	if err != nil {
		// The backup itself is safe; pruning runs again next time.
		s.d.Logger.Warn("backup retention", "err", err)
	}
	out.Pruned = deleted
	if len(deleted) > 0 {
		s.d.Logger.Info("backup retention deleted old objects", "count", len(deleted))
	}
	// The result shows in the dashboard and answers `cepjobs backup now`
	// (no writer outside an asynq server).
	if rw := t.ResultWriter(); rw != nil {
		if b, err := json.Marshal(out); err == nil {
			_, _ = rw.Write(b)
		}
	}
	return nil
}

// alert mails ops about a backup that will not be retried.
func (s *Stats) alert(ctx context.Context, slot time.Time, cause error) {
	if s.d.OpsEmail == "" {
		return
	}
	subject := "cepjobs: backup failed (" + slot.UTC().Format("2006-01-02 15:04 UTC") + ")"
	text := strings.Join([]string{
		"The database backup for slot " + slot.UTC().Format(time.RFC3339) + " failed and will not be retried.",
		"", "Error: " + cause.Error(), "",
		"Check `cepjobs doctor`, then run `cepjobs backup now` once fixed.",
	}, "\n")
	ctx = context.WithoutCancel(ctx)
	emailID, outboxID, err := s.d.Store.QueueEmail(ctx, store.Email{ToEmail: s.d.OpsEmail, Subject: subject, Text: text, Tags: []string{"alert"}},
		s.d.Now(), tasks.TypeEmailSend, emailPayload)
	if err != nil {
		s.d.Logger.Error("queue backup alert email", "err", err)
		return
	}
	// Sent now if Redis answers; otherwise the intake's outbox relay sends it.
	payload, _ := emailPayload(emailID)
	s.d.Dispatch.Now(ctx, outboxID, tasks.TypeEmailSend, payload)
}

func emailPayload(id string) ([]byte, error) { return json.Marshal(tasks.EmailSend{EmailID: id}) }

// purge runs the daily maintenance purge.
func (s *Stats) purge(ctx context.Context, t *asynq.Task) error {
	if _, err := tasks.Decode[tasks.MaintenancePurge](t); err != nil {
		return err
	}
	r, err := s.d.Store.Purge(ctx, s.d.Now(), 7*24*time.Hour, 7*24*time.Hour, 90*24*time.Hour)
	if err != nil {
		return err
	}
	var anonymised int64
	if s.d.LeadRetention > 0 {
		if anonymised, err = s.d.Store.AnonymiseOlderThan(ctx, s.d.Now().Add(-s.d.LeadRetention), s.d.Now()); err != nil {
			return err
		}
	}
	s.d.Logger.Info("maintenance purge", "idempotency_keys", r.IdempotencyKeys, "outbox_rows", r.OutboxRows, "legacy_lead_ids", r.LegacyLeadIDs, "emails", r.Emails,
		"leads_anonymised", anonymised)
	return nil
}

// rollup recomputes one day's statistics.
func (s *Stats) rollup(ctx context.Context, t *asynq.Task) error {
	p, err := tasks.Decode[tasks.StatsRollup](t)
	if err != nil {
		return err
	}
	day, _ := time.Parse(time.DateOnly, p.Day)
	n, err := s.d.Store.RollupDay(ctx, day, s.d.Now())
	if err != nil {
		return err
	}
	s.d.Logger.Info("stats rolled up", "day", p.Day, "rows", n)
	if rw := t.ResultWriter(); rw != nil {
		_, _ = rw.Write([]byte(fmt.Sprintf(`{"day":%q,"rows":%d}`, p.Day, n)))
	}
	return nil
}

// BackupMetrics are the backup gauges and counters.
type BackupMetrics struct {
	lastSuccess, lastDuration, lastSize prometheus.Gauge
	failures                            prometheus.Counter
}

// NewBackupMetrics registers the backup metrics on reg.
func NewBackupMetrics(reg prometheus.Registerer) *BackupMetrics {
	m := &BackupMetrics{
		lastSuccess:  prometheus.NewGauge(prometheus.GaugeOpts{Name: "cepjobs_backup_last_success_timestamp_seconds", Help: "When the last successful backup finished (Unix time)."}),
		lastDuration: prometheus.NewGauge(prometheus.GaugeOpts{Name: "cepjobs_backup_last_duration_seconds", Help: "How long the last successful backup took."}),
		lastSize:     prometheus.NewGauge(prometheus.GaugeOpts{Name: "cepjobs_backup_last_size_bytes", Help: "Size of the last successful backup."}),
		failures:     prometheus.NewCounter(prometheus.CounterOpts{Name: "cepjobs_backup_failures_total", Help: "Failed backup attempts."}),
	}
	reg.MustRegister(m.lastSuccess, m.lastDuration, m.lastSize, m.failures)
	return m
}

// SetLast initialises the gauges from the newest backup in storage, so a
// restarted worker does not report "never".
func (m *BackupMetrics) SetLast(finished time.Time, size int64) {
	m.lastSuccess.Set(float64(finished.Unix()))
	m.lastSize.Set(float64(size))
}
