package scheduler

import (
	"errors"
	"fmt"
	"time"
)

// Config is the scheduler's part of the configuration. The backup spec is
// not here: backup.Config owns CEPJOBS_BACKUP_SCHEDULE, and one variable
// must have one owner; pass it to DefaultTable.
type Config struct {
	RollupSchedule      string        `env:"CEPJOBS_ROLLUP_SCHEDULE" default:"0 * * * *"`
	MaintenanceSchedule string        `env:"CEPJOBS_MAINTENANCE_SCHEDULE" default:"30 4 * * *"`
	Grace               time.Duration `env:"CEPJOBS_SCHEDULER_GRACE" default:"6h"`
	// MetaInsights is the daily read of Meta Ads spend.
	MetaInsights MetaInsightsConfig
	// ReportSchedule sends the weekly report of the week before; empty
	// leaves it out of Table.
	ReportSchedule string `env:"CEPJOBS_REPORT_SCHEDULE" default:"CRON_TZ=Europe/Madrid 0 7 * * 1"`
}

// MetaInsightsConfig schedules campaign:sync-meta. The loader always fills
// Schedule (an empty variable means the default); a Config built in code
// without it leaves the entry out of Table.
type MetaInsightsConfig struct {
	// Schedule reads Meta Ads insights once a day after Meta has settled
	// the previous day: 05:15 UTC is early morning in Madrid.
	Schedule string `env:"CEPJOBS_META_INSIGHTS_SCHEDULE" default:"15 5 * * *"`
}

// Validate reports what is wrong with c.
func (c MetaInsightsConfig) Validate() error {
	if c.Schedule == "" {
		return nil
	}
	if err := ValidateSpec(c.Schedule); err != nil {
		return fmt.Errorf("CEPJOBS_META_INSIGHTS_SCHEDULE: %w", err)
	}
	return nil
}

// MaxGrace bounds CEPJOBS_SCHEDULER_GRACE. Completed tasks are kept for
// the grace window (see Params.Grace), so a huge one would fill Redis with
// old runs.
const MaxGrace = 7 * 24 * time.Hour

// Validate reports every problem with c; each message starts with the
// variable's name.
func (c Config) Validate() error {
	var errs []error
	if err := ValidateSpec(c.RollupSchedule); err != nil {
		errs = append(errs, fmt.Errorf("CEPJOBS_ROLLUP_SCHEDULE: %w", err))
	}
	if err := ValidateSpec(c.MaintenanceSchedule); err != nil {
		errs = append(errs, fmt.Errorf("CEPJOBS_MAINTENANCE_SCHEDULE: %w", err))
	}
	if err := c.MetaInsights.Validate(); err != nil {
		errs = append(errs, err)
	}
	errs = append(errs, optionalSpec("CEPJOBS_REPORT_SCHEDULE", c.ReportSchedule)) // Join drops a nil
	if c.Grace < 0 || c.Grace > MaxGrace {
		errs = append(errs, fmt.Errorf("CEPJOBS_SCHEDULER_GRACE: want a duration between 0 (no catch-up) and %s, got %s", fmtDuration(MaxGrace), c.Grace))
	}
	return errors.Join(errs...)
}
