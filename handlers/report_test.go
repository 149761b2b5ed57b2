package handlers_test

import (
	"bytes"
	"context"
	"encoding/csv"
	"errors"
	"html"
	"io"
	"log/slog"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/cepcomunicacion/cepjobs/handlers"
	"github.com/cepcomunicacion/cepjobs/internal/backup/backuptest"
	"github.com/cepcomunicacion/cepjobs/internal/objstore"
	"github.com/cepcomunicacion/cepjobs/internal/outbox"
	"github.com/cepcomunicacion/cepjobs/internal/redisconn"
	"github.com/cepcomunicacion/cepjobs/internal/testenv"
	"github.com/cepcomunicacion/cepjobs/store"
	"github.com/cepcomunicacion/cepjobs/tasks"
)

type reportBundle struct {
	mux       *asynq.ServeMux
	conn      *pgx.Conn
	inspector *asynq.Inspector
	now       time.Time
}

// reportSetup wires the report handler to the test database, the real
// outbox dispatcher on the test Redis, and, unless noS3, a real S3 server.
func reportSetup(t *testing.T, now time.Time, recipients []string, noS3 bool) *reportBundle {
	t.Helper()
	ctx := context.Background()
	st, err := store.Open(ctx, store.Config{URL: dbURL})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	// The report tests run in parallel on one DB: each looks its tasks up
	// by id, and none flushes the DB under the others.
	opt, _ := redisconn.Parse(testenv.SharedRedisURL(t, testenv.RedisDBHandlers))
	rc := redisconn.Client(opt)
	t.Cleanup(func() { rc.Close() })
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	d := handlers.ReportDeps{
		Store:    st,
		Dispatch: outbox.NewDispatcher(st, asynq.NewClientFromRedisClient(rc), log, outbox.NewMetrics(prometheus.NewRegistry()), nil),
		Config:   handlers.ReportConfig{Recipients: recipients},
		Logger:   log,
		Now:      func() time.Time { return now },
	}
	if !noS3 {
		srv := backuptest.StartS3(t)
		objs, err := objstore.New(objstore.Config{Endpoint: srv.Endpoint, AccessKey: srv.AccessKey, SecretKey: srv.SecretKey,
			Region: srv.Region, UseTLS: srv.UseTLS, Bucket: srv.Config(t).Bucket}, nil)
		if err != nil {
			t.Fatal(err)
		}
		d.Objects = objs
	}
	mux := asynq.NewServeMux()
	handlers.NewReport(d).Register(mux)
	return &reportBundle{mux: mux, conn: conn, inspector: asynq.NewInspectorFromRedisClient(rc), now: now}
}

func (b *reportBundle) run(t *testing.T, week string) error {
	t.Helper()
	return b.mux.ProcessTask(context.Background(), asynq.NewTask(tasks.TypeStatsReport, []byte(`{"week":"`+week+`"}`)))
}

// seedStats writes roll-up rows as stats:rollup would: detail rows, and
// campaign rows ("*") with spend.
func seedStats(t *testing.T, conn *pgx.Conn, rows ...string) {
	t.Helper()
	for _, r := range rows {
		_, err := conn.Exec(context.Background(), `
			insert into cepjobs.stats_daily (day, course, site, campaign, source, leads, marketing_optin, delivered, failed, skipped, spend, cost_per_lead, computed_at)
			values `+r)
		if err != nil {
			t.Fatalf("seed %s: %v", r, err)
		}
	}
}

type reportEmail struct {
	id, subject, text, html string
	outboxID                string
	dispatched              bool
}

// waitMarks waits up to 5 s for the outbox rows of the report emails to
// these recipients to be marked dispatched.
func (b *reportBundle) waitMarks(t *testing.T, to ...string) {
	t.Helper()
	var n int
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if err := b.conn.QueryRow(context.Background(), `
			select count(*)
			from cepjobs.email_messages e join cepjobs.outbox o on o.task_type = 'email:send' and convert_from(o.payload, 'UTF8')::jsonb->>'email_id' = e.id::text
			where e.to_email = any($1) and 'report' = any(e.tags) and o.dispatched_at is null`, to).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			return
		}
	}
	t.Errorf("%d report emails' outbox rows still not marked dispatched after 5 s", n)
}

// emailsTo lists the emails queued for addr, with their outbox rows.
func (b *reportBundle) emailsTo(t *testing.T, addr string) []reportEmail {
	t.Helper()
	rows, err := b.conn.Query(context.Background(), `
		select e.id::text, e.subject, coalesce(e.text_body, ''), coalesce(e.html_body, ''), o.id::text, o.dispatched_at is not null
		from cepjobs.email_messages e join cepjobs.outbox o on o.task_type = 'email:send' and convert_from(o.payload, 'UTF8')::jsonb->>'email_id' = e.id::text
		where e.to_email = $1 and 'report' = any(e.tags)`, addr)
	if err != nil {
		t.Fatal(err)
	}
	var out []reportEmail
	for rows.Next() {
		var e reportEmail
		if err := rows.Scan(&e.id, &e.subject, &e.text, &e.html, &e.outboxID, &e.dispatched); err != nil {
			t.Fatal(err)
		}
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

type reportExport struct {
	status, key, url, filters string
	rows, bytes               int64
	expires                   *time.Time
}

func (b *reportBundle) exportsOf(t *testing.T, week string) []reportExport {
	t.Helper()
	rows, err := b.conn.Query(context.Background(), `
		select status, coalesce(object_key, ''), coalesce(url, ''), filters::text, rows, bytes, url_expires_at
		from cepjobs.exports where kind = 'report' and (filters->>'from')::timestamptz = $1::date`, week)
	if err != nil {
		t.Fatal(err)
	}
	var out []reportExport
	for rows.Next() {
		var e reportExport
		if err := rows.Scan(&e.status, &e.key, &e.url, &e.filters, &e.rows, &e.bytes, &e.expires); err != nil {
			t.Fatal(err)
		}
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestWeeklyReport runs stats:report over two seeded weeks: one email per
// recipient with the charts and a CSV link that downloads the week's rows,
// one export row; a second run sends nothing.
func TestWeeklyReport(t *testing.T) {
	t.Parallel()
	const week = "2031-03-03"
	recipients := []string{"direccion.report@example.com", "marketing.report@example.com"}
	now := time.Date(2031, 3, 10, 6, 0, 0, 0, time.UTC) // the Monday after, 07:00 in Madrid
	b := reportSetup(t, now, recipients, false)
	seedStats(t, b.conn,
		// The week: 30 leads, 18 of them from campaign bf, which spent 180 €.
		`('2031-03-03', 'marketing-digital', 'madrid', 'bf', 'meta-leadgen', 12, 6, '{"welcome_email":12,"whatsapp":11}', '{"whatsapp":1}', '{"mailchimp":6}', null, null, now())`,
		`('2031-03-03', 'diseno', 'barcelona', '', 'web-form', 8, 2, '{"welcome_email":8}', '{}', '{}', null, null, now())`,
		`('2031-03-05', 'marketing-digital', 'madrid', '', 'web-form', 4, 4, '{}', '{}', '{}', null, null, now())`,
		`('2031-03-09', 'diseno', 'madrid', 'bf', 'meta-leadgen', 6, 3, '{}', '{}', '{}', null, null, now())`,
		`('2031-03-03', '*', '*', 'bf', '*', 12, 6, '{}', '{}', '{}', 120, 10, now())`,
		`('2031-03-09', '*', '*', 'bf', '*', 6, 3, '{}', '{}', '{}', 60, 10, now())`,
		// The week before: 10 leads from bf for 150 €.
		`('2031-02-24', 'marketing-digital', 'madrid', 'bf', 'meta-leadgen', 10, 5, '{}', '{}', '{}', null, null, now())`,
		`('2031-02-24', '*', '*', 'bf', '*', 10, 5, '{}', '{}', '{}', 150, 15, now())`,
		// Outside both weeks.
		`('2031-03-10', 'diseno', 'madrid', '', 'web-form', 99, 0, '{}', '{}', '{}', null, null, now())`,
	)

	start := time.Now()
	if err := b.run(t, week); err != nil {
		t.Fatalf("report: %v", err)
	}
	t.Logf("first run: %s", time.Since(start).Round(time.Millisecond))

	exps := b.exportsOf(t, week)
	if len(exps) != 1 {
		t.Fatalf("report exports of %s: got %d, want 1", week, len(exps))
	}
	ex := exps[0]
	if ex.status != store.ExportCompleted || ex.key != "reports/weekly/2031-03-03.csv" || ex.url == "" || ex.rows != 6 || ex.bytes == 0 {
		t.Errorf("export: got status %s, key %q, url %q, %d rows, %d bytes; want completed, reports/weekly/2031-03-03.csv, a link, 6 rows",
			ex.status, ex.key, ex.url, ex.rows, ex.bytes)
	}
	if ex.expires == nil || !ex.expires.Equal(now.Add(7*24*time.Hour)) {
		t.Errorf("link expires: got %v, want %s", ex.expires, now.Add(7*24*time.Hour))
	}
	if !strings.Contains(ex.filters, `"from": "2031-03-03T00:00:00Z"`) || !strings.Contains(ex.filters, `"to": "2031-03-10T00:00:00Z"`) {
		t.Errorf("export filters: got %s, want the week from 2031-03-03 to 2031-03-10", ex.filters)
	}

	// The link downloads the CSV without credentials.
	resp, err := http.Get(ex.url)
	if err != nil {
		t.Fatal(err)
	}
	data, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("download: got %d: %.300s", resp.StatusCode, data)
	}
	if int64(len(data)) != ex.bytes {
		t.Errorf("downloaded %d bytes, the export says %d", len(data), ex.bytes)
	}
	recs, err := csv.NewReader(bytes.NewReader(bytes.TrimPrefix(data, []byte("\uFEFF")))).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 7 || recs[0][0] != "day" || recs[1][1] != "diseno" {
		t.Errorf("csv: got %d records (%q), want a header and 6 rows", len(recs), recs)
	}
	for _, r := range recs[1:] {
		if r[0] < "2031-03-03" || r[0] > "2031-03-09" {
			t.Errorf("csv row outside the week: %q", r)
		}
	}

	// The dispatcher records dispatched marks off the request path, in
	// batches: give it a moment.
	b.waitMarks(t, recipients...)
	for _, to := range recipients {
		es := b.emailsTo(t, to)
		if len(es) != 1 {
			t.Fatalf("emails to %s: got %d, want 1", to, len(es))
		}
		e := es[0]
		if want := "Informe semanal de leads: semana del 3 al 9 de marzo de 2031"; e.subject != want {
			t.Errorf("subject: got %q, want %q", e.subject, want)
		}
		for _, want := range []string{
			`title="marketing-digital: 12"`, // a bar segment: 12 of the busiest day's 20
			"10,00\u00a0€",                  // cost per lead of bf: 180 € / 18
			"semana anterior: 15,00\u00a0€", // and the week before: 150 € / 10
			"50,0\u00a0%",                   // opt-in: 15 of 30
			`href="` + html.EscapeString(ex.url) + `"`,
		} {
			if !strings.Contains(e.html, want) {
				t.Errorf("email to %s: html has no %q", to, want)
			}
		}
		if w := regexp.MustCompile(`<td width="(\d+)%" height="16" bgcolor="#[0-9A-F]{6}" title="marketing-digital: 12"`).FindStringSubmatch(e.html); w == nil || w[1] != "60" {
			t.Errorf("email to %s: bar of marketing-digital on Monday: got %v, want width 60%%", to, w)
		}
		if strings.Contains(e.html, "<svg") || strings.Contains(e.html, "display:flex") {
			t.Errorf("email to %s: html uses svg or flex", to)
		}
		for _, want := range []string{"- Leads: 30", ex.url} {
			if !strings.Contains(e.text, want) {
				t.Errorf("email to %s: text has no %q:\n%s", to, want, e.text)
			}
		}
		// Dispatched inline: the email:send task is in Redis under the
		// outbox row's id.
		if !e.dispatched {
			t.Errorf("email to %s: outbox row not dispatched", to)
		}
		if info, err := b.inspector.GetTaskInfo(tasks.QueueDefault, e.outboxID); err != nil || info.Type != tasks.TypeEmailSend {
			t.Errorf("email to %s: email:send task %s: got %v, %v", to, e.outboxID, info, err)
		}
	}

	// A re-run (a retry, a second scheduler, someone by hand) sends
	// nothing more.
	start = time.Now()
	if err := b.run(t, week); err != nil {
		t.Fatalf("second run: %v", err)
	}
	t.Logf("second run: %s", time.Since(start).Round(time.Millisecond))
	for _, to := range recipients {
		if n := len(b.emailsTo(t, to)); n != 1 {
			t.Errorf("emails to %s after a re-run: got %d, want 1", to, n)
		}
	}
	if n := len(b.exportsOf(t, week)); n != 1 {
		t.Errorf("report exports after a re-run: got %d, want 1", n)
	}
}

// TestWeeklyReportWithoutObjectStorage still mails the figures, saying the
// CSV is not available, and records the week as sent.
func TestWeeklyReportWithoutObjectStorage(t *testing.T) {
	t.Parallel()
	const week = "2031-05-05"
	b := reportSetup(t, time.Date(2031, 5, 12, 6, 0, 0, 0, time.UTC), []string{"sin-s3.report@example.com"}, true)
	seedStats(t, b.conn, `('2031-05-06', 'diseno', 'madrid', '', 'web-form', 3, 1, '{}', '{}', '{}', null, null, now())`)
	if err := b.run(t, week); err != nil {
		t.Fatal(err)
	}
	es := b.emailsTo(t, "sin-s3.report@example.com")
	if len(es) != 1 || !strings.Contains(es[0].text, "El detalle en CSV no está disponible") {
		t.Fatalf("emails: got %d (%+v), want 1 saying the CSV is not available", len(es), es)
	}
	if exps := b.exportsOf(t, week); len(exps) != 1 || exps[0].status != store.ExportCompleted || exps[0].key != "" {
		t.Errorf("exports: got %+v, want one completed without an object", exps)
	}
}

func TestWeeklyReportOffWithoutRecipients(t *testing.T) {
	t.Parallel()
	const week = "2031-06-02"
	b := reportSetup(t, time.Date(2031, 6, 9, 6, 0, 0, 0, time.UTC), nil, true)
	if err := b.run(t, week); err != nil {
		t.Fatalf("got %v, want nil (reports off)", err)
	}
	if exps := b.exportsOf(t, week); len(exps) != 0 {
		t.Errorf("exports: got %d, want none", len(exps))
	}
}

func TestWeeklyReportRefusesWeeksItCannotReport(t *testing.T) {
	t.Parallel()
	b := reportSetup(t, time.Date(2031, 7, 9, 12, 0, 0, 0, time.UTC), []string{"x.report@example.com"}, true)
	for _, week := range []string{"2031-07-08", "2031-07-07", "July"} { // a Tuesday; a week not over; junk
		err := b.run(t, week)
		if !errors.Is(err, asynq.SkipRetry) {
			t.Errorf("week %q: got %v, want an error wrapping asynq.SkipRetry", week, err)
		}
	}
	if n := len(b.emailsTo(t, "x.report@example.com")); n != 0 {
		t.Errorf("emails: got %d, want none", n)
	}
}

func TestReportConfigValidate(t *testing.T) {
	t.Parallel()
	if err := (handlers.ReportConfig{Recipients: []string{"a@example.com", "b.c@example.es"}}).Validate(); err != nil {
		t.Errorf("good recipients: %v", err)
	}
	err := (handlers.ReportConfig{Recipients: []string{"a@example.com", "nope", "Ana <ana@example.com>"}}).Validate()
	if err == nil || strings.Count(err.Error(), "CEPJOBS_REPORT_RECIPIENTS:") != 2 {
		t.Errorf("bad recipients: got %v, want two CEPJOBS_REPORT_RECIPIENTS problems", err)
	}
}
