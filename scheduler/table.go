package scheduler

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/cepcomunicacion/cepjobs/tasks"
)

// Names of the entries of the production table, as logs and `cepjobs
// schedule` show them.
const (
	EntryBackup      = "backup"
	EntryRollup      = "rollup"
	EntryMaintenance = "maintenance"
	// EntryMetaInsights reads Meta Ads spend (campaign:sync-meta).
	EntryMetaInsights = "meta-insights"
	// EntryReport sends the weekly report (stats:report).
	EntryReport = "report"
)

// Table is the production schedule: DefaultTable's entries, then those
// whose specs only c holds (the daily Meta Ads insights read, unless its
// schedule is empty). backupSpec is CEPJOBS_BACKUP_SCHEDULE, owned by
// backup.Config. Errors start with the variable's name, every problem at
// once.
func (c Config) Table(backupSpec string) ([]Entry, error) {
	table, err := DefaultTable(backupSpec, c.RollupSchedule, c.MaintenanceSchedule)
	metaErr := c.MetaInsights.Validate()
	if err := errors.Join(err, metaErr, optionalSpec("CEPJOBS_REPORT_SCHEDULE", c.ReportSchedule)); err != nil {
		return nil, err
	}
	if c.MetaInsights.Schedule != "" {
		table = append(table, Entry{Name: EntryMetaInsights, Spec: c.MetaInsights.Schedule, TaskType: tasks.TypeCampaignSyncMeta, Payload: metaInsightsPayload})
	}
	if c.ReportSchedule != "" {
		table = append(table, Entry{Name: EntryReport, Spec: c.ReportSchedule, TaskType: tasks.TypeStatsReport, Payload: reportPayload})
	}
	return table, nil
}

// DefaultTable is the fixed part of the production schedule (Config.Table
// is the whole of it): the database backup, the stats rollup and the
// maintenance purge. The specs come from
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
		{Name: EntryRollup, Spec: rollupSpec, TaskType: tasks.TypeStatsRollup, Payload: rollupPayload},
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

// rollupPayload is the day that ended most recently at the slot: the
// hourly slots roll up today so far, and the midnight slot rolls up the
// whole of yesterday, its last hour included.
func rollupPayload(slot time.Time) ([]byte, error) {
	return dayPayload(slot.Add(-time.Hour))
}

// metaInsightsPayload is tasks.CampaignSyncMeta for the slot's day in UTC:
// the sync reads the configured number of days up to it.
func metaInsightsPayload(slot time.Time) ([]byte, error) {
	return json.Marshal(tasks.CampaignSyncMeta{Day: slot.UTC().Format(time.DateOnly)})
}

// reportPayload is tasks.StatsReport for the last whole week before the
// slot (UTC): fired on a Monday, the week that just ended.
func reportPayload(slot time.Time) ([]byte, error) {
	return json.Marshal(tasks.PreviousWeek(slot))
}

// optionalSpec checks a spec that may be empty (entry left out), naming
// the variable; nil when fine.
func optionalSpec(name, spec string) error {
	if spec == "" {
		return nil
	}
	if err := ValidateSpec(spec); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	return nil
}
