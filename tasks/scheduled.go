package tasks

import (
	"errors"
	"fmt"
	"time"

	"github.com/hibiken/asynq"
)

// BackupDatabase asks for a database backup. Slot is the scheduled time it
// stands for (or the request time for an on-demand backup): it names the
// run, and the scheduler derives the TaskID from it.
type BackupDatabase struct {
	Slot time.Time `json:"slot"`
}

// Validate reports what is wrong with the payload.
func (p BackupDatabase) Validate() error {
	if p.Slot.IsZero() {
		return errors.New("slot: required")
	}
	return nil
}

// NewBackupDatabase builds the backup:database task.
func NewBackupDatabase(p BackupDatabase, taskID string) (*asynq.Task, error) {
	return build(TypeBackupDatabase, p, taskID)
}

// StatsRollup asks for one day's statistics to be (re)computed.
type StatsRollup struct {
	Day string `json:"day"` // YYYY-MM-DD
}

// Validate reports what is wrong with the payload.
func (p StatsRollup) Validate() error { return validDay(p.Day) }

// MaintenancePurge asks for the retention purges of one day.
type MaintenancePurge struct {
	Day string `json:"day"` // YYYY-MM-DD
}

// Validate reports what is wrong with the payload.
func (p MaintenancePurge) Validate() error { return validDay(p.Day) }

func validDay(d string) error {
	if _, err := time.Parse(time.DateOnly, d); err != nil {
		return fmt.Errorf("day: want YYYY-MM-DD, got %q", d)
	}
	return nil
}
