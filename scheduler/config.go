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
	if c.Grace < 0 || c.Grace > MaxGrace {
		errs = append(errs, fmt.Errorf("CEPJOBS_SCHEDULER_GRACE: want a duration between 0 (no catch-up) and %s, got %s", fmtDuration(MaxGrace), c.Grace))
	}
	return errors.Join(errs...)
}
