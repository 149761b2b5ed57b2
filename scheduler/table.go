package scheduler

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/cepcomunicacion/cepjobs/tasks"
)

// Names of the entries of DefaultTable, as logs and `cepjobs schedule` show
// them.
const (
	EntryBackup      = "backup"
	EntryRollup      = "rollup"
	EntryMaintenance = "maintenance"
)

// DefaultTable is the production schedule: the database backup, the stats
// rollup and the maintenance purge. The specs come from
// CEPJOBS_BACKUP_SCHEDULE (owned by backup.Config), CEPJOBS_ROLLUP_SCHEDULE
// and CEPJOBS_MAINTENANCE_SCHEDULE; errors start with the variable's name.
func DefaultTable(backupSpec, rollupSpec, maintenanceSpec string) ([]Entry, error) {
	var errs []error
	for _, v := range []struct{ name, spec string }{
		{"CEPJOBS_BACKUP_SCHEDULE", backupSpec},
		{"CEPJOBS_ROLLUP_SCHEDULE", rollupSpec},
		{"CEPJOBS_MAINTENANCE_SCHEDULE", maintenanceSpec},
	} {
		if err := ValidateSpec(v.spec); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", v.name, err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return []Entry{
		{Name: EntryBackup, Spec: backupSpec, TaskType: tasks.TypeBackupDatabase, Payload: backupPayload},
		{Name: EntryRollup, Spec: rollupSpec, TaskType: tasks.TypeStatsRollup, Payload: dayPayload},
		{Name: EntryMaintenance, Spec: maintenanceSpec, TaskType: tasks.TypeMaintenancePurge, Payload: dayPayload},
	}, nil
}

// The payload shapes below are the wire contract of their task types and
// belong in package tasks; they live here until tasks grows
// BackupDatabase, StatsRollup and MaintenancePurge.

// backupPayload is {"slot":"2026-11-28T03:00:00Z"}: the backup names its
// slot so its object key is the same on a retry.
func backupPayload(slot time.Time) ([]byte, error) {
	return json.Marshal(struct {
		Slot time.Time `json:"slot"`
	}{slot.UTC()})
}

// dayPayload is {"day":"2026-11-28"}, the slot's day in UTC.
func dayPayload(slot time.Time) ([]byte, error) {
	return json.Marshal(struct {
		Day string `json:"day"`
	}{slot.UTC().Format(time.DateOnly)})
}
