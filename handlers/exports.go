package handlers

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/hibiken/asynq"

	"github.com/cepcomunicacion/cepjobs/internal/objstore"
	"github.com/cepcomunicacion/cepjobs/store"
	"github.com/cepcomunicacion/cepjobs/tasks"
)

// ExportsConfig tunes exports. The object store's endpoint is the backups'
// (S3_*); the bucket is not.
type ExportsConfig struct {
	Bucket string `env:"CEPJOBS_EXPORTS_BUCKET" default:"cep-exports"`
	// URLTTL is how long a download link works. Anyone holding the link
	// can download the export until then.
	URLTTL time.Duration `env:"CEPJOBS_EXPORT_URL_TTL" default:"24h"`
	// Columns are written in this order; the consent evidence columns
	// (ConsentColumns) follow whether listed or not.
	Columns []string `env:"CEPJOBS_EXPORT_COLUMNS" default:"id,received_at,first_name,last_name,email,phone,course,campaign,site,source,utm_source,utm_medium,utm_campaign"`
}

// DefaultExportColumns is CEPJOBS_EXPORT_COLUMNS's default.
var DefaultExportColumns = []string{"id", "received_at", "first_name", "last_name", "email", "phone", "course", "campaign", "site", "source", "utm_source", "utm_medium", "utm_campaign"}

// WithDefaults fills the zero fields, for configs built in code.
func (c ExportsConfig) WithDefaults() ExportsConfig {
	if c.Bucket == "" {
		c.Bucket = "cep-exports"
	}
	if c.URLTTL == 0 {
		c.URLTTL = 24 * time.Hour
	}
	if len(c.Columns) == 0 {
		c.Columns = DefaultExportColumns
	}
	return c
}

// Validate reports every problem.
func (c ExportsConfig) Validate() error {
	var errs []error
	if err := objstore.ValidBucketName(c.Bucket); err != nil {
		errs = append(errs, fmt.Errorf("CEPJOBS_EXPORTS_BUCKET: %v", err))
	}
	if c.URLTTL < time.Minute || c.URLTTL > objstore.MaxURLTTL {
		errs = append(errs, fmt.Errorf("CEPJOBS_EXPORT_URL_TTL: must be between 1m and 168h (7 days, the most a presigned S3 link allows), got %s", c.URLTTL))
	}
	if _, err := exportColumnsFor(c.Columns); err != nil {
		errs = append(errs, fmt.Errorf("CEPJOBS_EXPORT_COLUMNS: %v", err))
	}
	return errors.Join(errs...)
}

// exportColumn is one CSV column and how a lead fills it.
type exportColumn struct {
	name  string
	value func(*store.ExportedLead) string
}

// knownExportColumns is every column an export can have.
var knownExportColumns = []exportColumn{
	{"id", func(l *store.ExportedLead) string { return l.ID }},
	{"external_id", func(l *store.ExportedLead) string { return l.ExternalID }},
	{"first_name", func(l *store.ExportedLead) string { return l.FirstName }},
	{"last_name", func(l *store.ExportedLead) string { return l.LastName }},
	{"email", func(l *store.ExportedLead) string { return l.Email }},
	{"phone", func(l *store.ExportedLead) string { return l.Phone }},
	{"course", func(l *store.ExportedLead) string { return l.Course }},
	{"campaign", func(l *store.ExportedLead) string { return l.Campaign }},
	{"site", func(l *store.ExportedLead) string { return l.Site }},
	{"source", func(l *store.ExportedLead) string { return l.Source }},
	{"message", func(l *store.ExportedLead) string { return l.Message }},
	{"utm_source", func(l *store.ExportedLead) string { return l.UTMSource }},
	{"utm_medium", func(l *store.ExportedLead) string { return l.UTMMedium }},
	{"utm_campaign", func(l *store.ExportedLead) string { return l.UTMCampaign }},
	{"utm_term", func(l *store.ExportedLead) string { return l.UTMTerm }},
	{"utm_content", func(l *store.ExportedLead) string { return l.UTMContent }},
	{"status", func(l *store.ExportedLead) string { return l.Status }},
	{"submitted_by", func(l *store.ExportedLead) string { return l.SubmittedBy }},
	// Consent evidence (ConsentColumns).
	{"consent_privacy", func(l *store.ExportedLead) string { return strconv.FormatBool(l.ConsentPrivacy) }},
	{"consent_marketing", func(l *store.ExportedLead) string { return strconv.FormatBool(l.ConsentMarketing) }},
	{"consent_text_version", func(l *store.ExportedLead) string { return l.ConsentTextVersion }},
	{"consent_accepted_at", func(l *store.ExportedLead) string { return csvTime(l.ConsentAcceptedAt) }},
	{"client_ip", func(l *store.ExportedLead) string { return l.ClientIP }},
	{"client_user_agent", func(l *store.ExportedLead) string { return l.ClientUserAgent }},
	{"received_at", func(l *store.ExportedLead) string { return csvTime(&l.ReceivedAt) }},
}

// ConsentColumns are in every leads export whatever CEPJOBS_EXPORT_COLUMNS
// says: the proof of what each person agreed to, when, and from where.
var ConsentColumns = []string{"consent_privacy", "consent_marketing", "consent_text_version", "consent_accepted_at", "client_ip", "client_user_agent", "received_at"}

// KnownExportColumns lists every column CEPJOBS_EXPORT_COLUMNS may name.
func KnownExportColumns() []string {
	out := make([]string, len(knownExportColumns))
	for i, c := range knownExportColumns {
		out[i] = c.name
	}
	return out
}

// exportColumnsFor resolves the configured names into columns: in their
// order, each once, then the consent columns not named.
func exportColumnsFor(names []string) ([]exportColumn, error) {
	var (
		out     []exportColumn
		unknown []string
		seen    = map[string]bool{}
	)
	for _, n := range append(slices.Clip(names), ConsentColumns...) {
		if seen[n] {
			continue
		}
		seen[n] = true
		i := slices.IndexFunc(knownExportColumns, func(c exportColumn) bool { return c.name == n })
		if i < 0 {
			unknown = append(unknown, strconv.Quote(n))
			continue
		}
		out = append(out, knownExportColumns[i])
	}
	if len(unknown) > 0 {
		return nil, fmt.Errorf("unknown column %s (known: %s)", strings.Join(unknown, ", "), strings.Join(KnownExportColumns(), ", "))
	}
	return out, nil
}

func csvTime(t *time.Time) string {
	if t == nil || t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339)
}

// neutralise defuses CSV injection (OWASP): a cell a spreadsheet would read
// as a formula gets a leading single quote, which Excel and LibreOffice show
// as text and hide. E.164 phone numbers (+34…) get one too; that also keeps
// spreadsheets from turning them into numbers.
func neutralise(v string) string {
	if v != "" && strings.ContainsRune("=+-@\t\r", rune(v[0])) {
		return "'" + v
	}
	return v
}

// ExportKey is where an export's object goes: under the day it was
// requested, so a retry on another day rewrites the same object.
func ExportKey(e store.Export) string {
	return fmt.Sprintf("exports/%s/%s/%s.csv", e.Kind, e.CreatedAt.UTC().Format("2006/01/02"), e.ID)
}

// exportStore is what exports need of the database.
type exportStore interface {
	Export(ctx context.Context, id string) (store.Export, error)
	StartExport(ctx context.Context, id string, now time.Time) (store.Export, error)
	ExportLeads(ctx context.Context, f store.ExportFilter, fn func(*store.ExportedLead) error) (int64, error)
	CompleteExport(ctx context.Context, id string, o store.ExportOutcome, now time.Time) error
	FailExport(ctx context.Context, id, reason string, now time.Time) error
	SetExportURL(ctx context.Context, id, url string, expiresAt, now time.Time) error
}

// exportObjects is what exports need of *objstore.Store.
type exportObjects interface {
	Upload(ctx context.Context, key, contentType string, write func(ctx context.Context, w io.Writer) error) (int64, error)
	PresignGet(ctx context.Context, key string, ttl time.Duration, filename string) (string, error)
}

// ExportsDeps wires the exports handler.
type ExportsDeps struct {
	Store exportStore
	// Objects is nil when object storage is not configured: exports then
	// fail at once, saying so, instead of waiting forever.
	Objects exportObjects
	Config  ExportsConfig
	Logger  *slog.Logger
	Now     func() time.Time
}

// Exports handles export:leads on worker-stats.
type Exports struct {
	d       ExportsDeps
	columns []exportColumn
}

// NewExports checks the configuration and returns the handler.
func NewExports(d ExportsDeps) (*Exports, error) {
	if d.Now == nil {
		d.Now = time.Now
	}
	if d.Logger == nil {
		d.Logger = slog.New(slog.DiscardHandler)
	}
	d.Config = d.Config.WithDefaults()
	if err := d.Config.Validate(); err != nil {
		return nil, fmt.Errorf("new exports handler: %w", err)
	}
	cols, _ := exportColumnsFor(d.Config.Columns)
	return &Exports{d: d, columns: cols}, nil
}

// Register adds export:leads to mux.
func (e *Exports) Register(mux *asynq.ServeMux) {
	mux.HandleFunc(tasks.TypeExportLeads, e.exportLeads)
}

// Columns are the CSV header an export writes.
func (e *Exports) Columns() []string {
	out := make([]string, len(e.columns))
	for i, c := range e.columns {
		out[i] = c.name
	}
	return out
}

// ExportResult is the task's asynq result, shown in the dashboard. It has no
// link: the link is a bearer secret and the dashboard is no place for it.
type ExportResult struct {
	ExportID  string `json:"export_id"`
	Rows      int64  `json:"rows"`
	Bytes     int64  `json:"bytes"`
	ObjectKey string `json:"object_key"`
	Renewed   bool   `json:"renewed_link,omitempty"`
}

// renewMargin: a link with less than this left is renewed, not handed out.
const renewMargin = time.Minute

func (e *Exports) exportLeads(ctx context.Context, t *asynq.Task) error {
	p, err := tasks.Decode[tasks.ExportLeads](t)
	if err != nil {
		return err
	}
	// A first look decides without writing anything: link renewal works
	// for an export of any kind, writing one only for leads.
	ex, err := e.d.Store.Export(ctx, p.ExportID)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return fmt.Errorf("export %s not found: %w", p.ExportID, asynq.SkipRetry)
	case err != nil:
		return fmt.Errorf("export %s: %w", p.ExportID, err)
	case ex.Status == store.ExportFailed:
		return nil
	case ex.Status == store.ExportCompleted:
		return e.renew(ctx, t, ex)
	case ex.Kind != store.ExportKindLeads:
		return fmt.Errorf("export %s is a %s export, which export:leads does not write: %w", ex.ID, ex.Kind, asynq.SkipRetry)
	}
	ex, err = e.d.Store.StartExport(ctx, p.ExportID, e.d.Now())
	switch {
	case errors.Is(err, store.ErrBadExportFilter):
		if ex.Status == store.ExportCompleted || ex.Status == store.ExportFailed {
			return nil
		}
		return e.fail(ctx, p.ExportID, err)
	case err != nil:
		return fmt.Errorf("export %s: %w", p.ExportID, err)
	case ex.Status == store.ExportFailed:
		return nil
	case ex.Status == store.ExportCompleted:
		return e.renew(ctx, t, ex) // finished by a run racing this one
	}
	if e.d.Objects == nil {
		return e.fail(ctx, ex.ID, errors.New("object storage is not configured on worker-stats (set S3_ENDPOINT, S3_ACCESS_KEY and S3_SECRET_KEY)"))
	}
	if err := ex.Filters.Validate(); err != nil {
		return e.fail(ctx, ex.ID, err)
	}

	key := ExportKey(ex)
	start := time.Now()
	var rows int64
	// A re-run of an export that stopped half-way lands here too: the
	// object is rewritten whole, never appended to.
	size, err := e.d.Objects.Upload(ctx, key, "text/csv; charset=utf-8", func(ctx context.Context, w io.Writer) error {
		var err error
		rows, err = e.writeCSV(ctx, w, ex.Filters)
		return err
	})
	if err != nil {
		// Object storage or the database: both come back.
		return e.transient(ctx, ex.ID, fmt.Errorf("export %s: %w", ex.ID, err))
	}
	now := e.d.Now()
	link, err := e.d.Objects.PresignGet(ctx, key, e.d.Config.URLTTL, exportFilename(ex))
	if err != nil {
		return e.transient(ctx, ex.ID, fmt.Errorf("export %s: %w", ex.ID, err))
	}
	out := store.ExportOutcome{Rows: rows, Bytes: size, ObjectKey: key, URL: link, URLExpiresAt: now.Add(e.d.Config.URLTTL)}
	if err := e.d.Store.CompleteExport(ctx, ex.ID, out, now); err != nil {
		return e.transient(ctx, ex.ID, fmt.Errorf("export %s: %w", ex.ID, err))
	}
	e.d.Logger.Info("export written", "export_id", ex.ID, "rows", rows, "bytes", size, "key", key,
		"duration", time.Since(start).Round(time.Millisecond).String())
	writeResult(t, ExportResult{ExportID: ex.ID, Rows: rows, Bytes: size, ObjectKey: key})
	return nil
}

// renew gives a completed export a fresh link when its link is gone
// (GET /v1/exports/{id} drops an expired one and queues this task) or about
// to expire; otherwise the re-run does nothing.
func (e *Exports) renew(ctx context.Context, t *asynq.Task, ex store.Export) error {
	now := e.d.Now()
	if ex.ObjectKey == "" || (ex.URL != "" && ex.URLExpiresAt != nil && ex.URLExpiresAt.After(now.Add(renewMargin))) {
		return nil // no object to link to, or a link that still works
	}
	if e.d.Objects == nil {
		return fmt.Errorf("renew link of export %s: object storage is not configured on worker-stats: %w", ex.ID, asynq.SkipRetry)
	}
	link, err := e.d.Objects.PresignGet(ctx, ex.ObjectKey, e.d.Config.URLTTL, exportFilename(ex))
	if err != nil {
		return fmt.Errorf("renew link of export %s: %w", ex.ID, err)
	}
	if err := e.d.Store.SetExportURL(ctx, ex.ID, link, now.Add(e.d.Config.URLTTL), now); err != nil {
		return fmt.Errorf("renew link of export %s: %w", ex.ID, err)
	}
	writeResult(t, ExportResult{ExportID: ex.ID, Rows: ex.Rows, Bytes: ex.Bytes, ObjectKey: ex.ObjectKey, Renewed: true})
	return nil
}

// writeCSV writes the header and every selected lead to w: a UTF-8 byte
// order mark first (without it Excel reads the file as the local code page
// and mangles every accent), then RFC 4180 lines.
func (e *Exports) writeCSV(ctx context.Context, w io.Writer, f store.ExportFilter) (int64, error) {
	if _, err := io.WriteString(w, "\uFEFF"); err != nil {
		return 0, err
	}
	cw := csv.NewWriter(w)
	cw.UseCRLF = true
	if err := cw.Write(e.Columns()); err != nil {
		return 0, err
	}
	record := make([]string, len(e.columns))
	n, err := e.d.Store.ExportLeads(ctx, f, func(l *store.ExportedLead) error {
		for i, c := range e.columns {
			record[i] = neutralise(c.value(l))
		}
		return cw.Write(record)
	})
	if err != nil {
		return n, err
	}
	cw.Flush()
	return n, cw.Error()
}

func exportFilename(ex store.Export) string {
	return fmt.Sprintf("%s-%s-%s.csv", ex.Kind, ex.CreatedAt.UTC().Format(time.DateOnly), ex.ID)
}

// fail records an export that cannot succeed and stops its task for good.
func (e *Exports) fail(ctx context.Context, id string, cause error) error {
	if err := e.d.Store.FailExport(context.WithoutCancel(ctx), id, cause.Error(), e.d.Now()); err != nil {
		// Not recorded: retry, and the next attempt fails it again.
		return fmt.Errorf("export %s: %v; recording the failure: %w", id, cause, err)
	}
	return fmt.Errorf("export %s: %w: %w", id, cause, asynq.SkipRetry)
}

// transient returns err for a retry, and records the export failed when
// this was its last attempt, so it does not stay running forever.
func (e *Exports) transient(ctx context.Context, id string, err error) error {
	if final, _ := finalAttempt(ctx, err); final {
		if ferr := e.d.Store.FailExport(context.WithoutCancel(ctx), id, err.Error(), e.d.Now()); ferr != nil {
			e.d.Logger.Error("record failed export", "export_id", id, "err", ferr)
		}
	}
	return err
}

func writeResult(t *asynq.Task, v any) {
	if rw := t.ResultWriter(); rw != nil {
		if b, err := json.Marshal(v); err == nil {
			_, _ = rw.Write(b)
		}
	}
}
