package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// Export statuses.
const (
	ExportQueued    = "queued"
	ExportRunning   = "running"
	ExportCompleted = "completed"
	ExportFailed    = "failed"
)

// ExportKindLeads is an export of leads as CSV (the other kind, report, is
// written by stats:report).
const ExportKindLeads = "leads"

// ErrBadExportFilter: an export's stored filters cannot be read or make no
// sense; running it again will not help.
var ErrBadExportFilter = errors.New("bad export filter")

// ExportFilter selects the leads of an export. Empty fields select
// everything; erased leads are never selected. It is stored as the export's
// filters (JSON).
type ExportFilter struct {
	Course   string `json:"course,omitempty"`
	Campus   string `json:"campus,omitempty"` // leads.site
	Source   string `json:"source,omitempty"`
	Campaign string `json:"campaign,omitempty"`
	// From is inclusive, To exclusive (received_at).
	From *time.Time `json:"from,omitempty"`
	To   *time.Time `json:"to,omitempty"`
	// MarketingConsent nil selects leads with and without marketing consent.
	MarketingConsent *bool `json:"marketing_consent,omitempty"`
}

// Validate reports what makes the filter unusable. The API checks each
// field in detail; this is the worker's last line.
func (f ExportFilter) Validate() error {
	var errs []error
	for _, v := range [...]struct{ name, v string }{{"course", f.Course}, {"campus", f.Campus}, {"source", f.Source}, {"campaign", f.Campaign}} {
		if len(v.v) > 128 {
			errs = append(errs, fmt.Errorf("%s: longer than 128 bytes", v.name))
		}
	}
	if f.From != nil && f.To != nil && !f.To.After(*f.From) {
		errs = append(errs, fmt.Errorf("to (%s) is not after from (%s)", f.To.Format(time.RFC3339), f.From.Format(time.RFC3339)))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("%w: %w", ErrBadExportFilter, err)
	}
	return nil
}

// NewExport is an export request as the API accepts it.
type NewExport struct {
	Kind    string
	Filters ExportFilter
	// RequestedBy is the name of the API token that asked.
	RequestedBy string
}

// Export is one export and its outcome.
type Export struct {
	ID           string
	Kind         string
	Filters      ExportFilter
	Status       string
	Rows         int64
	Bytes        int64
	ObjectKey    string
	URL          string
	URLExpiresAt *time.Time
	Error        string
	RequestedBy  string
	CreatedAt    time.Time
	FinishedAt   *time.Time
	UpdatedAt    time.Time
}

// CreateExport stores an export and its outbox row (taskType, the payload
// built from the new id) in one transaction.
func (s *Store) CreateExport(ctx context.Context, e NewExport, now time.Time, taskType string, payload func(id string) ([]byte, error)) (id, outboxID string, err error) {
	filters, err := json.Marshal(e.Filters)
	if err != nil {
		return "", "", fmt.Errorf("create export: %w", err)
	}
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		u, err := uuid.NewV7()
		if err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `
			insert into cepjobs.exports (id, kind, filters, requested_by, created_at, updated_at)
			values ($1, $2, $3, $4, $5, $5)`, u, e.Kind, filters, e.RequestedBy, now)
		if err != nil {
			return err
		}
		p, err := payload(u.String())
		if err != nil {
			return err
		}
		id = u.String()
		outboxID, err = insertOutbox(ctx, tx, taskType, p, now)
		return err
	})
	if err != nil {
		return "", "", fmt.Errorf("create export: %w", err)
	}
	return id, outboxID, nil
}

const exportColumns = `id::text, kind, filters, status, rows, bytes, coalesce(object_key, ''), coalesce(url, ''),
	url_expires_at, coalesce(error, ''), requested_by, created_at, finished_at, updated_at`

// scanExport reads one export. Filters that do not decode come back as
// ErrBadExportFilter together with the rest of the row.
func scanExport(row pgx.Row) (Export, error) {
	var (
		e       Export
		filters []byte
	)
	err := row.Scan(&e.ID, &e.Kind, &filters, &e.Status, &e.Rows, &e.Bytes, &e.ObjectKey, &e.URL,
		&e.URLExpiresAt, &e.Error, &e.RequestedBy, &e.CreatedAt, &e.FinishedAt, &e.UpdatedAt)
	if err != nil {
		return Export{}, mapErr(err)
	}
	dec := json.NewDecoder(strings.NewReader(string(filters)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&e.Filters); err != nil {
		return e, fmt.Errorf("%w: %v", ErrBadExportFilter, err)
	}
	return e, nil
}

// Export loads an export, or ErrNotFound.
func (s *Store) Export(ctx context.Context, id string) (Export, error) {
	if _, err := uuid.Parse(id); err != nil {
		return Export{}, ErrNotFound
	}
	e, err := scanExport(s.pool.QueryRow(ctx, `select `+exportColumns+` from cepjobs.exports where id = $1`, id))
	if err != nil && !errors.Is(err, ErrBadExportFilter) {
		return Export{}, fmt.Errorf("load export: %w", err)
	}
	// An undecodable filter is the worker's problem (it fails the export);
	// the row is still worth showing.
	return e, nil
}

// StartExport marks a queued or running export running and returns it as it
// was before, so a finished export is not run again. A running one is
// restarted: its object is rewritten from scratch.
func (s *Store) StartExport(ctx context.Context, id string, now time.Time) (Export, error) {
	var e Export
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var err error
		e, err = scanExport(tx.QueryRow(ctx, `select `+exportColumns+` from cepjobs.exports where id = $1 for update`, id))
		if err != nil {
			return err
		}
		if e.Status == ExportCompleted || e.Status == ExportFailed {
			return nil
		}
		_, err = tx.Exec(ctx, `update cepjobs.exports set status = 'running', error = null, updated_at = $2 where id = $1`, id, now)
		return err
	})
	if err != nil {
		return e, fmt.Errorf("start export: %w", err)
	}
	return e, nil
}

// ExportOutcome is what a finished export produced.
type ExportOutcome struct {
	Rows         int64
	Bytes        int64
	ObjectKey    string
	URL          string
	URLExpiresAt time.Time
}

// CompleteExport records a written export. An export already completed or
// failed is left alone.
func (s *Store) CompleteExport(ctx context.Context, id string, o ExportOutcome, now time.Time) error {
	_, err := s.pool.Exec(ctx, `
		update cepjobs.exports set status = 'completed', rows = $2, bytes = $3, object_key = $4, url = $5,
			url_expires_at = $6, error = null, finished_at = $7, updated_at = $7
		where id = $1 and status in ('queued', 'running')`,
		id, o.Rows, o.Bytes, o.ObjectKey, o.URL, o.URLExpiresAt, now)
	if err != nil {
		return fmt.Errorf("complete export: %w", err)
	}
	return nil
}

// FailExport records why an export will not be written. A completed export
// is left alone.
func (s *Store) FailExport(ctx context.Context, id, reason string, now time.Time) error {
	_, err := s.pool.Exec(ctx, `
		update cepjobs.exports set status = 'failed', error = $2, finished_at = $3, updated_at = $3
		where id = $1 and status in ('queued', 'running')`, id, truncate(reason, 1000), now)
	if err != nil {
		return fmt.Errorf("fail export: %w", err)
	}
	return nil
}

// SetExportURL records a renewed download link of a completed export.
func (s *Store) SetExportURL(ctx context.Context, id, url string, expiresAt, now time.Time) error {
	_, err := s.pool.Exec(ctx, `
		update cepjobs.exports set url = $2, url_expires_at = $3, updated_at = $4
		where id = $1 and status = 'completed'`, id, url, expiresAt, now)
	if err != nil {
		return fmt.Errorf("set export url: %w", err)
	}
	return nil
}

// RenewStale is how long a link renewal may stay pending before another
// request queues it again (the first one's task failed for good).
const RenewStale = 15 * time.Minute

// RenewExportURL asks for a new download link when a completed export's
// link expires before cutoff: in one transaction it drops the old link and
// writes the outbox row (taskType, payload from the id) of the task that
// presigns a new one. It returns that row's id, or "" when there is nothing
// to renew or a renewal is already pending.
func (s *Store) RenewExportURL(ctx context.Context, id string, cutoff, now time.Time, taskType string, payload func(id string) ([]byte, error)) (string, error) {
	var outboxID string
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `
			update cepjobs.exports set url = null, url_expires_at = null, updated_at = $3
			where id = $1 and status = 'completed' and object_key is not null
				and (url_expires_at <= $2 or (url is null and updated_at <= $4))`,
			id, cutoff, now, now.Add(-RenewStale))
		if err != nil || tag.RowsAffected() == 0 {
			return err
		}
		p, err := payload(id)
		if err != nil {
			return err
		}
		outboxID, err = insertOutbox(ctx, tx, taskType, p, now)
		return err
	})
	if err != nil {
		return "", fmt.Errorf("renew export url: %w", err)
	}
	return outboxID, nil
}

// ExportedLead is one lead as an export writes it. Empty strings stand for
// NULL.
type ExportedLead struct {
	ID          string
	ExternalID  string
	FirstName   string
	LastName    string
	Email       string
	Phone       string
	Course      string
	Campaign    string
	Site        string
	Source      string
	Message     string
	UTMSource   string
	UTMMedium   string
	UTMCampaign string
	UTMTerm     string
	UTMContent  string
	Status      string
	SubmittedBy string
	ReceivedAt  time.Time
	// Consent evidence.
	ConsentPrivacy     bool
	ConsentMarketing   bool
	ConsentTextVersion string
	ConsentAcceptedAt  *time.Time
	ClientIP           string
	ClientUserAgent    string
}

// ExportLeads calls fn for every lead f selects, oldest first, and returns
// how many there were. Erased leads are left out: their personal fields are
// blank and an export of blanks helps nobody.
//
// Rows stream from one query: pgx reads them off the connection as fn
// consumes them, so memory does not grow with the result. The *ExportedLead
// is reused: fn must not keep it. An error from fn stops the query.
func (s *Store) ExportLeads(ctx context.Context, f ExportFilter, fn func(*ExportedLead) error) (int64, error) {
	conds := []string{"erased_at is null"}
	var args []any
	add := func(cond string, v any) {
		args = append(args, v)
		conds = append(conds, fmt.Sprintf(cond, len(args)))
	}
	if f.Course != "" {
		add("course = $%d", f.Course)
	}
	if f.Campus != "" {
		add("site = $%d", f.Campus)
	}
	if f.Source != "" {
		add("source = $%d", f.Source)
	}
	if f.Campaign != "" {
		add("campaign = $%d", f.Campaign)
	}
	if f.From != nil {
		add("received_at >= $%d", *f.From)
	}
	if f.To != nil {
		add("received_at < $%d", *f.To)
	}
	if f.MarketingConsent != nil {
		add("consent_marketing = $%d", *f.MarketingConsent)
	}
	rows, err := s.pool.Query(ctx, `
		select id::text, coalesce(external_id, ''), first_name, coalesce(last_name, ''), email, coalesce(phone, ''),
			course, coalesce(campaign, ''), coalesce(site, ''), source, coalesce(message, ''),
			coalesce(utm->>'source', ''), coalesce(utm->>'medium', ''), coalesce(utm->>'campaign', ''),
			coalesce(utm->>'term', ''), coalesce(utm->>'content', ''),
			status, submitted_by, received_at,
			consent_privacy, consent_marketing, consent_text_version, consent_accepted_at,
			coalesce(host(client_ip), ''), coalesce(client_user_agent, '')
		from cepjobs.leads
		where `+strings.Join(conds, " and ")+`
		order by received_at, id`, args...)
	if err != nil {
		return 0, fmt.Errorf("export leads: %w", err)
	}
	defer rows.Close()
	var (
		l ExportedLead
		n int64
	)
	// One destination list for every row: building it per row allocated
	// a 25-pointer slice each time (a third of an export's garbage).
	dest := []any{&l.ID, &l.ExternalID, &l.FirstName, &l.LastName, &l.Email, &l.Phone,
		&l.Course, &l.Campaign, &l.Site, &l.Source, &l.Message,
		&l.UTMSource, &l.UTMMedium, &l.UTMCampaign, &l.UTMTerm, &l.UTMContent,
		&l.Status, &l.SubmittedBy, &l.ReceivedAt,
		&l.ConsentPrivacy, &l.ConsentMarketing, &l.ConsentTextVersion, &l.ConsentAcceptedAt,
		&l.ClientIP, &l.ClientUserAgent}
	for rows.Next() {
		if err := rows.Scan(dest...); err != nil {
			return n, fmt.Errorf("export leads: %w", err)
		}
		if err := fn(&l); err != nil {
			return n, err
		}
		n++
	}
	if err := rows.Err(); err != nil {
		return n, fmt.Errorf("export leads: %w", err)
	}
	return n, nil
}
