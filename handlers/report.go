package handlers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/mail"
	"time"

	"github.com/hibiken/asynq"

	"github.com/cepcomunicacion/cepjobs/internal/objstore"
	"github.com/cepcomunicacion/cepjobs/internal/report"
	"github.com/cepcomunicacion/cepjobs/store"
	"github.com/cepcomunicacion/cepjobs/tasks"
)

// ReportConfig tunes the weekly report (stats:report).
type ReportConfig struct {
	// Recipients get the weekly report, one email each; none turns the
	// report off.
	Recipients []string `env:"CEPJOBS_REPORT_RECIPIENTS"`
}

// Validate reports every problem.
func (c ReportConfig) Validate() error {
	var errs []error
	for _, r := range c.Recipients {
		if a, err := mail.ParseAddress(r); err != nil || a.Address != r {
			errs = append(errs, fmt.Errorf("CEPJOBS_REPORT_RECIPIENTS: %q is not an email address (want a@example.com,b@example.com)", r))
		}
	}
	return errors.Join(errs...)
}

// ReportLinkTTL is how long the CSV link in a report works: a week, the
// most a presigned S3 link allows, so it lasts until the next report.
const ReportLinkTTL = objstore.MaxURLTTL

// ReportKey is where the CSV of the week starting monday (YYYY-MM-DD) goes:
// one object per week, rewritten whole by a re-run.
func ReportKey(monday string) string { return "reports/weekly/" + monday + ".csv" }

// reportStore is what the weekly report needs of the database.
type reportStore interface {
	Stats(ctx context.Context, from, to time.Time, by []string) ([]store.StatsRow, error)
	StartReport(ctx context.Context, from, to time.Time, requestedBy string, now time.Time) (store.Export, error)
	CompleteExport(ctx context.Context, id string, o store.ExportOutcome, now time.Time) error
	FailExport(ctx context.Context, id, reason string, now time.Time) error
	QueueEmail(ctx context.Context, e store.Email, now time.Time, taskType string, payload func(string) ([]byte, error)) (string, string, error)
}

// reportObjects is what the weekly report needs of *objstore.Store.
type reportObjects interface {
	Upload(ctx context.Context, key, contentType string, write func(ctx context.Context, w io.Writer) error) (int64, error)
	PresignGet(ctx context.Context, key string, ttl time.Duration, filename string) (string, error)
}

// ReportDeps wires the weekly report.
type ReportDeps struct {
	Store reportStore
	// Objects is nil when object storage is not configured: the report is
	// then sent without its CSV.
	Objects  reportObjects
	Dispatch outboxDispatcher
	Config   ReportConfig
	// Location is where the email shows times (the link's expiry); nil is
	// UTC. The report's days are UTC days whatever it is.
	Location *time.Location
	Logger   *slog.Logger
	Now      func() time.Time
}

// Report handles stats:report on worker-stats.
type Report struct{ d ReportDeps }

// NewReport returns the weekly report handler.
func NewReport(d ReportDeps) *Report {
	if d.Now == nil {
		d.Now = time.Now
	}
	if d.Logger == nil {
		d.Logger = slog.New(slog.DiscardHandler)
	}
	if d.Location == nil {
		d.Location = time.UTC
	}
	return &Report{d: d}
}

// Register adds stats:report to mux.
func (r *Report) Register(mux *asynq.ServeMux) {
	mux.HandleFunc(tasks.TypeStatsReport, r.weekly)
}

// ReportResult is the task's asynq result, shown in the dashboard (without
// the link, which is a bearer secret).
type ReportResult struct {
	Week        string `json:"week"`
	ExportID    string `json:"export_id"`
	Emails      int    `json:"emails"`
	Rows        int64  `json:"rows"`
	Bytes       int64  `json:"bytes"`
	ObjectKey   string `json:"object_key,omitempty"`
	AlreadySent bool   `json:"already_sent,omitempty"`
}

// reportRequester is the requested_by of report exports.
const reportRequester = "stats:report"

// weekly builds the report of one week from the roll-ups, uploads its CSV,
// and queues one email per recipient. The week's export row (kind report)
// makes a re-run of a sent week do nothing.
func (r *Report) weekly(ctx context.Context, t *asynq.Task) error {
	p, err := tasks.Decode[tasks.StatsReport](t)
	if err != nil {
		return err
	}
	if len(r.d.Config.Recipients) == 0 {
		r.d.Logger.Info("weekly report off: set CEPJOBS_REPORT_RECIPIENTS", "week", p.Week)
		return nil
	}
	from := p.Monday()
	end := from.AddDate(0, 0, 7)
	if now := r.d.Now(); end.After(now) {
		return fmt.Errorf("report %s: the week is not over until %s: %w", p.Week, end.Format(time.RFC3339), asynq.SkipRetry)
	}
	ex, err := r.d.Store.StartReport(ctx, from, end, reportRequester, r.d.Now())
	if err != nil {
		return fmt.Errorf("report %s: %w", p.Week, err)
	}
	if ex.Status == store.ExportCompleted {
		r.d.Logger.Info("weekly report already sent", "week", p.Week, "export_id", ex.ID)
		writeReportResult(t, ReportResult{Week: p.Week, ExportID: ex.ID, Rows: ex.Rows, Bytes: ex.Bytes, ObjectKey: ex.ObjectKey, AlreadySent: true})
		return nil
	}

	start := time.Now()
	in, err := r.load(ctx, from)
	if err != nil {
		return r.transient(ctx, ex.ID, fmt.Errorf("report %s: %w", p.Week, err))
	}
	in.Location = r.d.Location
	var out store.ExportOutcome
	if r.d.Objects != nil {
		if out, err = r.upload(ctx, p.Week, in); err != nil {
			return r.transient(ctx, ex.ID, fmt.Errorf("report %s: %w", p.Week, err))
		}
		in.Download = &report.Download{URL: out.URL, Expires: out.URLExpiresAt}
	} else {
		r.d.Logger.Warn("weekly report without its CSV: object storage is not configured (set S3_ENDPOINT, S3_ACCESS_KEY and S3_SECRET_KEY)", "week", p.Week)
		out.URLExpiresAt = r.d.Now()
	}
	email, err := report.Render(in)
	if err != nil {
		// The roll-ups hold something the report cannot show: a bug, not
		// a blip.
		return r.fail(ctx, ex.ID, fmt.Errorf("report %s: %w", p.Week, err))
	}

	// A failure part-way retries the task, and the recipients already
	// queued get the report twice: better than none of them getting it.
	for _, to := range r.d.Config.Recipients {
		emailID, outboxID, err := r.d.Store.QueueEmail(ctx, store.Email{
			ToEmail: to, Subject: email.Subject, Text: email.Text, HTML: email.HTML, Tags: []string{"report", "weekly-report"},
		}, r.d.Now(), tasks.TypeEmailSend, emailPayload)
		if err != nil {
			return r.transient(ctx, ex.ID, fmt.Errorf("report %s: %w", p.Week, err))
		}
		// Sent now if Redis answers; otherwise the intake's outbox relay
		// sends it.
		payload, _ := emailPayload(emailID)
		r.d.Dispatch.Now(ctx, outboxID, tasks.TypeEmailSend, payload)
	}
	if err := r.d.Store.CompleteExport(context.WithoutCancel(ctx), ex.ID, out, r.d.Now()); err != nil {
		return fmt.Errorf("report %s: emails queued, recording it: %w", p.Week, err)
	}
	r.d.Logger.Info("weekly report queued", "week", p.Week, "export_id", ex.ID, "emails", len(r.d.Config.Recipients),
		"rows", out.Rows, "bytes", out.Bytes, "duration", time.Since(start).Round(time.Millisecond).String())
	writeReportResult(t, ReportResult{Week: p.Week, ExportID: ex.ID, Emails: len(r.d.Config.Recipients), Rows: out.Rows, Bytes: out.Bytes, ObjectKey: out.ObjectKey})
	return nil
}

// load reads the roll-ups of the week starting from and of the week before.
// Stats takes inclusive day ranges.
func (r *Report) load(ctx context.Context, from time.Time) (report.Input, error) {
	in := report.Input{Monday: from}
	sunday, prevFrom, prevSunday := from.AddDate(0, 0, 6), from.AddDate(0, 0, -7), from.AddDate(0, 0, -1)
	all := []string{"day", "course", "site", "campaign", "source"}
	for _, q := range []struct {
		dst      *[]report.Row
		from, to time.Time
		by       []string
	}{
		{&in.Detail, from, sunday, all},
		{&in.PrevDetail, prevFrom, prevSunday, all},
		{&in.Campaigns, from, sunday, []string{"campaign"}},
		{&in.PrevCampaigns, prevFrom, prevSunday, []string{"campaign"}},
		{&in.CampaignDays, from, sunday, []string{"day", "campaign"}},
	} {
		rows, err := r.d.Store.Stats(ctx, q.from, q.to, q.by)
		if err != nil {
			return in, err
		}
		for _, s := range rows {
			*q.dst = append(*q.dst, report.Row{
				Day: s.Group["day"], Course: s.Group["course"], Site: s.Group["site"], Campaign: s.Group["campaign"], Source: s.Group["source"],
				Leads: s.Leads, MarketingOptIn: s.MarketingOptIn, Delivered: s.Delivered, Failed: s.Failed, Skipped: s.Skipped, Spend: s.Spend,
			})
		}
	}
	return in, nil
}

// upload writes the week's CSV and presigns its link.
func (r *Report) upload(ctx context.Context, week string, in report.Input) (store.ExportOutcome, error) {
	key := ReportKey(week)
	var rows int64
	size, err := r.d.Objects.Upload(ctx, key, report.CSVContentType, func(_ context.Context, w io.Writer) error {
		var err error
		rows, err = report.WriteCSV(w, in)
		return err
	})
	if err != nil {
		return store.ExportOutcome{}, err
	}
	expires := r.d.Now().Add(ReportLinkTTL)
	link, err := r.d.Objects.PresignGet(ctx, key, ReportLinkTTL, "informe-semanal-"+week+".csv")
	if err != nil {
		return store.ExportOutcome{}, err
	}
	return store.ExportOutcome{Rows: rows, Bytes: size, ObjectKey: key, URL: link, URLExpiresAt: expires}, nil
}

// fail records a report that cannot be built and stops its task for good;
// a later run of the same week tries again.
func (r *Report) fail(ctx context.Context, id string, cause error) error {
	if err := r.d.Store.FailExport(context.WithoutCancel(ctx), id, cause.Error(), r.d.Now()); err != nil {
		return fmt.Errorf("%v; recording the failure: %w", cause, err)
	}
	return fmt.Errorf("%w: %w", cause, asynq.SkipRetry)
}

// transient returns err for a retry, and records the report failed when
// this was its last attempt, so it does not stay running forever.
func (r *Report) transient(ctx context.Context, id string, err error) error {
	if final, _ := finalAttempt(ctx, err); final {
		if ferr := r.d.Store.FailExport(context.WithoutCancel(ctx), id, err.Error(), r.d.Now()); ferr != nil {
			r.d.Logger.Error("record failed report", "export_id", id, "err", ferr)
		}
	}
	return err
}

func writeReportResult(t *asynq.Task, res ReportResult) {
	if rw := t.ResultWriter(); rw != nil {
		if b, err := json.Marshal(res); err == nil {
			_, _ = rw.Write(b)
		}
	}
}
