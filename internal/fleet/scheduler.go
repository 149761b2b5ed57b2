package fleet

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/hibiken/asynq"

	"github.com/cepcomunicacion/cepjobs/handlers"
	"github.com/cepcomunicacion/cepjobs/internal/config"
	"github.com/cepcomunicacion/cepjobs/internal/redisconn"
	"github.com/cepcomunicacion/cepjobs/scheduler"
)

// Schedule is the scheduler process.
type Schedule struct {
	s      *scheduler.Scheduler
	client *asynq.Client
}

// ScheduleTable is the configured table, limited to task types some worker
// handles (the others are listed by `cepjobs schedule` as waiting).
func ScheduleTable(cfg config.Config) (active, waiting []scheduler.Entry, err error) {
	all, err := cfg.Scheduler.Table(cfg.Backup.Schedule)
	if err != nil {
		return nil, nil, err
	}
	for _, e := range all {
		if handlers.Handled[e.TaskType] {
			active = append(active, e)
		} else {
			waiting = append(waiting, e)
		}
	}
	return active, waiting, nil
}

// NewScheduler assembles the scheduler: robfig/cron firing the table, each
// slot enqueued with TaskID = type + slot time, so any number of replicas
// fire it once.
func NewScheduler(_ context.Context, cfg config.Config, log *slog.Logger) (*Schedule, error) {
	entries, waiting, err := ScheduleTable(cfg)
	if err != nil {
		return nil, err
	}
	for _, e := range waiting {
		log.Info("schedule entry waits for its handler", "name", e.Name, "task_type", e.TaskType)
	}
	opt, err := redisconn.Parse(cfg.Redis.URL)
	if err != nil {
		return nil, fmt.Errorf("REDIS_URL: %w", err)
	}
	client := asynq.NewClient(opt)
	s, err := scheduler.New(scheduler.Params{Entries: entries, Enqueuer: client, Logger: log, Grace: cfg.Scheduler.Grace})
	if err != nil {
		client.Close()
		return nil, err
	}
	return &Schedule{s: s, client: client}, nil
}

// Run fires slots until ctx ends.
func (s *Schedule) Run(ctx context.Context) error {
	defer s.client.Close()
	return s.s.Run(ctx)
}
