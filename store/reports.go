package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// ExportKindReport is the weekly report's CSV, written by stats:report.
const ExportKindReport = "report"

// StartReport finds the report of the week [from, to) — the export of kind
// report whose filters are {from, to} — or creates it, and marks it running.
// It returns the export as it was before, a new one as queued, so a
// completed report is not sent again; a running or failed one starts over.
func (s *Store) StartReport(ctx context.Context, from, to time.Time, requestedBy string, now time.Time) (Export, error) {
	from, to = from.UTC(), to.UTC()
	f := ExportFilter{From: &from, To: &to}
	filters, err := json.Marshal(f)
	if err != nil {
		return Export{}, fmt.Errorf("start report: %w", err)
	}
	var e Export
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		// One run of a week at a time decides whether it is new.
		if _, err := tx.Exec(ctx, `select pg_advisory_xact_lock($1)`, lockKey("report", from.Format(time.DateOnly))); err != nil {
			return err
		}
		var err error
		e, err = scanExport(tx.QueryRow(ctx, `
			select `+exportColumns+` from cepjobs.exports
			where kind = 'report' and filters = $1::jsonb
			order by created_at desc limit 1 for update`, string(filters)))
		if errors.Is(err, ErrNotFound) {
			id, err := uuid.NewV7()
			if err != nil {
				return err
			}
			_, err = tx.Exec(ctx, `
				insert into cepjobs.exports (id, kind, filters, status, requested_by, created_at, updated_at)
				values ($1, 'report', $2::jsonb, 'running', $3, $4, $4)`, id, string(filters), requestedBy, now)
			e = Export{ID: id.String(), Kind: ExportKindReport, Filters: f, Status: ExportQueued, RequestedBy: requestedBy, CreatedAt: now, UpdatedAt: now}
			return err
		}
		if err != nil || e.Status == ExportCompleted {
			return err
		}
		_, err = tx.Exec(ctx, `
			update cepjobs.exports set status = 'running', error = null, finished_at = null, updated_at = $2
			where id = $1`, e.ID, now)
		return err
	})
	if err != nil {
		return Export{}, fmt.Errorf("start report: %w", err)
	}
	return e, nil
}
