package handlers_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"os"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/hibiken/asynq"
	"github.com/jackc/pgx/v5"
	"github.com/minio/minio-go/v7"

	"github.com/cepcomunicacion/cepjobs/handlers"
	"github.com/cepcomunicacion/cepjobs/internal/backup/backuptest"
	"github.com/cepcomunicacion/cepjobs/internal/objstore"
	"github.com/cepcomunicacion/cepjobs/internal/testenv"
	"github.com/cepcomunicacion/cepjobs/store"
	"github.com/cepcomunicacion/cepjobs/tasks"
)

type exportsBundle struct {
	store   *store.Store
	conn    *pgx.Conn
	mux     *asynq.ServeMux
	objects *objstore.Store
	s3      *minio.Client
	cfg     handlers.ExportsConfig
}

// exportsSetup wires the export handler to the database at url and a real
// S3 server with a bucket of the test's own.
func exportsSetup(t *testing.T, url string, cfg handlers.ExportsConfig) *exportsBundle {
	t.Helper()
	ctx := context.Background()
	srv := backuptest.StartS3(t)
	bucket := srv.Config(t).Bucket // a fresh name, removed when the test ends
	objs, err := objstore.New(objstore.Config{Endpoint: srv.Endpoint, AccessKey: srv.AccessKey, SecretKey: srv.SecretKey,
		Region: srv.Region, UseTLS: srv.UseTLS, Bucket: bucket}, nil)
	if err != nil {
		t.Fatal(err)
	}
	c, err := srv.Client()
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(ctx, store.Config{URL: url})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	cfg.Bucket = bucket
	h, err := handlers.NewExports(handlers.ExportsDeps{Store: st, Objects: objs, Config: cfg, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	mux := asynq.NewServeMux()
	h.Register(mux)
	return &exportsBundle{store: st, conn: conn, mux: mux, objects: objs, s3: c, cfg: cfg.WithDefaults()}
}

func (b *exportsBundle) create(t *testing.T, f store.ExportFilter) string {
	t.Helper()
	id, _, err := b.store.CreateExport(context.Background(), store.NewExport{Kind: store.ExportKindLeads, Filters: f, RequestedBy: "cms"},
		time.Now(), tasks.TypeExportLeads, exportPayload)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func (b *exportsBundle) run(id string) error {
	return b.mux.ProcessTask(context.Background(), exportTask(id))
}

func exportPayload(id string) ([]byte, error) { return []byte(`{"export_id":"` + id + `"}`), nil }

func exportTask(id string) *asynq.Task {
	return asynq.NewTask(tasks.TypeExportLeads, []byte(`{"export_id":"`+id+`"}`))
}

func (b *exportsBundle) export(t *testing.T, id string) store.Export {
	t.Helper()
	e, err := b.store.Export(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// download fetches a presigned link the way a browser would: plain HTTP, no
// credentials.
func download(t *testing.T, link string) []byte {
	t.Helper()
	resp, err := http.Get(link)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("download: got %d, %v: %.200s", resp.StatusCode, err, data)
	}
	return data
}

func (b *exportsBundle) object(t *testing.T, key string) ([]byte, minio.ObjectInfo) {
	t.Helper()
	ctx := context.Background()
	info, err := b.s3.StatObject(ctx, b.objects.Bucket(), key, minio.StatObjectOptions{})
	if err != nil {
		t.Fatalf("stat %s: %v", key, err)
	}
	o, err := b.s3.GetObject(ctx, b.objects.Bucket(), key, minio.GetObjectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	data, err := io.ReadAll(o)
	if err != nil {
		t.Fatal(err)
	}
	return data, info
}

const bom = "\uFEFF"

// parseCSV checks the byte order mark and CRLF line ends, and returns the
// records.
func parseCSV(t *testing.T, data []byte) [][]string {
	t.Helper()
	if !bytes.HasPrefix(data, []byte(bom)) {
		t.Fatalf("export does not start with a UTF-8 BOM: %.20q", data)
	}
	if !bytes.HasSuffix(data, []byte("\r\n")) {
		t.Errorf("export lines do not end in CRLF: %.20q", data[max(0, len(data)-20):])
	}
	recs, err := csv.NewReader(bytes.NewReader(data[len(bom):])).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	return recs
}

// submit stores a lead through the store, as the intake would.
func submit(t *testing.T, s *store.Store, l store.NewLead, at time.Time) string {
	t.Helper()
	r, err := s.SubmitLead(context.Background(), l, at, nil)
	if err != nil {
		t.Fatal(err)
	}
	return r.LeadID
}

func exportLead(tag, name, course string) store.NewLead {
	return store.NewLead{
		FirstName: name, LastName: "García", Email: name + "." + tag + "@example.com", Phone: "+34600111222",
		Course: course, Campaign: "otono", Site: "sevilla", Source: "web-form", Message: "Hola",
		UTM:            map[string]string{"source": "facebook", "medium": "cpc"},
		ConsentPrivacy: true, ConsentMarketing: true, ConsentTextVersion: "2026-01",
		ConsentAcceptedAt: time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC),
		ClientIP:          netip.MustParseAddr("203.0.113.7"), ClientUserAgent: "Mozilla/5.0",
		SubmittedBy: "cms",
	}
}

func TestExportLeadsWritesFilteredCSVWithConsentEvidence(t *testing.T) {
	t.Parallel()
	b := exportsSetup(t, dbURL, handlers.ExportsConfig{})
	ctx := context.Background()
	tag := strconv.FormatInt(time.Now().UnixNano(), 36)
	course := "curso-" + tag
	at := time.Date(2026, 11, 20, 9, 0, 0, 0, time.UTC)

	ana := exportLead(tag, "Ana", course)
	anaID := submit(t, b.store, ana, at)
	// Every cell a spreadsheet would take for a formula.
	evil := exportLead(tag, "=HYPERLINK(\"http://evil.example\",\"pulsa\")", course)
	evil.LastName, evil.ClientUserAgent = "@SUM(A1:A9)", "-2+3+cmd|' /C calc'!A0"
	evil.Email = "evil." + tag + "@example.com"
	evilID := submit(t, b.store, evil, at.Add(time.Minute))
	noMarketing := exportLead(tag, "Nomkt", course)
	noMarketing.ConsentMarketing = false
	submit(t, b.store, noMarketing, at.Add(2*time.Minute))
	erased := exportLead(tag, "Erased", course)
	erasedID := submit(t, b.store, erased, at.Add(3*time.Minute))
	if err := b.store.EraseLead(ctx, erasedID, at); err != nil {
		t.Fatal(err)
	}
	submit(t, b.store, exportLead(tag, "Other", "otro-"+tag), at) // another course
	late := exportLead(tag, "Late", course)
	submit(t, b.store, late, at.AddDate(0, 1, 0)) // after "to"

	yes := true
	to := at.AddDate(0, 0, 7)
	id := b.create(t, store.ExportFilter{Course: course, MarketingConsent: &yes, To: &to})
	before := time.Now()
	if err := b.run(id); err != nil {
		t.Fatal(err)
	}
	e := b.export(t, id)
	wantKey := "exports/leads/" + e.CreatedAt.UTC().Format("2006/01/02") + "/" + id + ".csv"
	if e.Status != store.ExportCompleted || e.Rows != 2 || e.ObjectKey != wantKey || e.URL == "" || e.FinishedAt == nil {
		t.Fatalf("export: got %+v, want completed with 2 rows at %s and a link", e, wantKey)
	}
	if e.URLExpiresAt == nil || e.URLExpiresAt.Before(before.Add(24*time.Hour)) || e.URLExpiresAt.After(time.Now().Add(24*time.Hour)) {
		t.Errorf("link expiry: got %v, want 24h from now (CEPJOBS_EXPORT_URL_TTL default)", e.URLExpiresAt)
	}

	stored, info := b.object(t, e.ObjectKey)
	if e.Bytes != int64(len(stored)) {
		t.Errorf("bytes: got %d, object has %d", e.Bytes, len(stored))
	}
	if !strings.HasPrefix(info.ContentType, "text/csv") {
		t.Errorf("content type: got %q", info.ContentType)
	}
	if got := download(t, e.URL); !bytes.Equal(got, stored) {
		t.Errorf("the presigned link downloads %d bytes that differ from the %d stored", len(got), len(stored))
	}

	recs := parseCSV(t, stored)
	wantHeader := append(slices.Clone(handlers.DefaultExportColumns), "consent_privacy", "consent_marketing", "consent_text_version", "consent_accepted_at", "client_ip", "client_user_agent")
	if diff := cmp.Diff(wantHeader, recs[0]); diff != "" {
		t.Errorf("header (-want +got):\n%s", diff)
	}
	col := func(rec []string, name string) string { return rec[slices.Index(recs[0], name)] }
	var ids []string
	for _, rec := range recs[1:] {
		ids = append(ids, col(rec, "id"))
	}
	if diff := cmp.Diff([]string{anaID, evilID}, ids); diff != "" {
		t.Fatalf("exported leads (-want +got): (only marketing consent, course, before to; never erased)\n%s", diff)
	}
	row := recs[1]
	for name, want := range map[string]string{
		"first_name": "Ana", "email": ana.Email, "phone": "'+34600111222", "site": "sevilla", "utm_source": "facebook", "utm_campaign": "",
		"received_at": "2026-11-20T09:00:00Z", "consent_privacy": "true", "consent_marketing": "true", "consent_text_version": "2026-01",
		"consent_accepted_at": "2026-11-27T10:00:00Z", "client_ip": "203.0.113.7", "client_user_agent": "Mozilla/5.0",
	} {
		if got := col(row, name); got != want {
			t.Errorf("%s: got %q, want %q", name, got, want)
		}
	}
	for name, want := range map[string]string{
		"first_name":        `'=HYPERLINK("http://evil.example","pulsa")`,
		"last_name":         "'@SUM(A1:A9)",
		"client_user_agent": "'-2+3+cmd|' /C calc'!A0",
	} {
		if got := col(recs[2], name); got != want {
			t.Errorf("CSV injection in %s: got %q, want %q", name, got, want)
		}
	}
	if bytes.Contains(stored, []byte("Erased")) || bytes.Contains(stored, []byte("Nomkt")) {
		t.Error("the export holds a lead the filters exclude")
	}
}

func TestExportColumnsFollowTheAllowList(t *testing.T) {
	t.Parallel()
	// The consent evidence comes whether listed or not; a listed consent
	// column keeps its place.
	b := exportsSetup(t, dbURL, handlers.ExportsConfig{Columns: []string{"email", "client_ip", "course", "email"}})
	tag := strconv.FormatInt(time.Now().UnixNano(), 36)
	course := "curso-" + tag
	submit(t, b.store, exportLead(tag, "Ana", course), time.Now())
	id := b.create(t, store.ExportFilter{Course: course})
	if err := b.run(id); err != nil {
		t.Fatal(err)
	}
	data, _ := b.object(t, b.export(t, id).ObjectKey)
	recs := parseCSV(t, data)
	want := []string{"email", "client_ip", "course", "consent_privacy", "consent_marketing", "consent_text_version", "consent_accepted_at", "client_user_agent", "received_at"}
	if diff := cmp.Diff(want, recs[0]); diff != "" {
		t.Errorf("header (-want +got):\n%s", diff)
	}
	if len(recs) != 2 || recs[1][0] != "Ana."+tag+"@example.com" || recs[1][2] != course {
		t.Errorf("rows: got %q", recs[1:])
	}
	if bytes.Contains(data, []byte("García")) || bytes.Contains(data, []byte("+34600111222")) {
		t.Error("a column left out of the allow-list is in the export")
	}
}

func TestExportsConfigValidate(t *testing.T) {
	t.Parallel()
	if err := (handlers.ExportsConfig{}).WithDefaults().Validate(); err != nil {
		t.Errorf("defaults: %v", err)
	}
	bad := handlers.ExportsConfig{Bucket: "Exports_Bucket", URLTTL: 8 * 24 * time.Hour, Columns: []string{"email", "password", "dni"}}
	err := bad.Validate()
	for _, want := range []string{"CEPJOBS_EXPORTS_BUCKET:", "CEPJOBS_EXPORT_URL_TTL:", `CEPJOBS_EXPORT_COLUMNS: unknown column "password", "dni"`} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("bad config: got %v, want it to mention %s", err, want)
		}
	}
	if _, err := handlers.NewExports(handlers.ExportsDeps{Config: handlers.ExportsConfig{Columns: []string{"nope"}}}); err == nil {
		t.Error("NewExports with an unknown column: got nil error")
	}
}

func TestExportRerunIsIdempotent(t *testing.T) {
	t.Parallel()
	b := exportsSetup(t, dbURL, handlers.ExportsConfig{})
	ctx := context.Background()
	tag := strconv.FormatInt(time.Now().UnixNano(), 36)
	course := "curso-" + tag
	for i := range 3 {
		submit(t, b.store, exportLead(tag, fmt.Sprintf("Lead%d", i), course), time.Now())
	}

	// Completed: a second run (a duplicate delivery) changes nothing.
	id := b.create(t, store.ExportFilter{Course: course})
	if err := b.run(id); err != nil {
		t.Fatal(err)
	}
	first := b.export(t, id)
	_, info := b.object(t, first.ObjectKey)
	if err := b.run(id); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(first, b.export(t, id)); diff != "" {
		t.Errorf("second run changed the export (-first +second):\n%s", diff)
	}
	if _, again := b.object(t, first.ObjectKey); again.ETag != info.ETag || !again.LastModified.Equal(info.LastModified) {
		t.Errorf("second run rewrote the object: etag %s → %s", info.ETag, again.ETag)
	}

	// Half done (the worker died mid-upload, or a part was written by an
	// older run): the object is rewritten whole.
	id2 := b.create(t, store.ExportFilter{Course: course})
	if _, err := b.store.StartExport(ctx, id2, time.Now()); err != nil {
		t.Fatal(err)
	}
	key := handlers.ExportKey(b.export(t, id2))
	if _, err := b.s3.PutObject(ctx, b.objects.Bucket(), key, strings.NewReader("id,half"), 7, minio.PutObjectOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := b.run(id2); err != nil {
		t.Fatal(err)
	}
	e := b.export(t, id2)
	data, _ := b.object(t, key)
	if recs := parseCSV(t, data); e.Status != store.ExportCompleted || e.Rows != 3 || len(recs) != 4 || e.Bytes != int64(len(data)) {
		t.Errorf("re-run of a half-done export: got %+v and %d records, want completed with 3 rows", e, len(recs)-1)
	}
}

func TestExportRenewsExpiredLink(t *testing.T) {
	t.Parallel()
	b := exportsSetup(t, dbURL, handlers.ExportsConfig{URLTTL: time.Hour})
	ctx := context.Background()
	tag := strconv.FormatInt(time.Now().UnixNano(), 36)
	course := "curso-" + tag
	submit(t, b.store, exportLead(tag, "Ana", course), time.Now())
	id := b.create(t, store.ExportFilter{Course: course})
	if err := b.run(id); err != nil {
		t.Fatal(err)
	}
	first := b.export(t, id)
	_, info := b.object(t, first.ObjectKey)

	// What GET /v1/exports/{id} does once the link expired.
	later := time.Now().Add(2 * time.Hour)
	if o, err := b.store.RenewExportURL(ctx, id, later, later, tasks.TypeExportLeads, exportPayload); err != nil || o == "" {
		t.Fatalf("renew: got %q, %v", o, err)
	}
	if err := b.run(id); err != nil {
		t.Fatal(err)
	}
	e := b.export(t, id)
	// (The link itself may read the same: presigned in the same second
	// with the same TTL, it is.)
	if e.URL == "" || e.URLExpiresAt == nil || !e.URLExpiresAt.After(*first.URLExpiresAt) || e.URLExpiresAt.Before(time.Now().Add(59*time.Minute)) {
		t.Fatalf("renewed link: got %q expiring %v, want a new one for an hour", e.URL, e.URLExpiresAt)
	}
	if e.Rows != first.Rows || e.Bytes != first.Bytes || !e.FinishedAt.Equal(*first.FinishedAt) {
		t.Errorf("renewal changed the export: got %+v", e)
	}
	stored, again := b.object(t, e.ObjectKey)
	if again.ETag != info.ETag {
		t.Error("renewal rewrote the object")
	}
	if got := download(t, e.URL); !bytes.Equal(got, stored) {
		t.Error("the renewed link downloads other bytes")
	}
}

func TestExportFailuresAreClassified(t *testing.T) {
	t.Parallel()
	b := exportsSetup(t, dbURL, handlers.ExportsConfig{})
	ctx := context.Background()

	// Filters that cannot work: failed for good, and the export says why.
	id := b.create(t, store.ExportFilter{})
	if _, err := b.conn.Exec(ctx, `update cepjobs.exports set filters = '{"from":"2026-12-01T00:00:00Z","to":"2026-11-01T00:00:00Z"}' where id = $1`, id); err != nil {
		t.Fatal(err)
	}
	if err := b.run(id); !errors.Is(err, asynq.SkipRetry) {
		t.Errorf("bad filters: got %v, want SkipRetry", err)
	}
	if e := b.export(t, id); e.Status != store.ExportFailed || !strings.Contains(e.Error, "not after from") {
		t.Errorf("bad filters: got status %q error %q, want failed saying why", e.Status, e.Error)
	}
	if err := b.run(id); err != nil {
		t.Errorf("re-run of a failed export: got %v, want nil", err)
	}

	// Another kind of export (stats:report writes those): left alone.
	id = b.create(t, store.ExportFilter{})
	if _, err := b.conn.Exec(ctx, `update cepjobs.exports set kind = 'report' where id = $1`, id); err != nil {
		t.Fatal(err)
	}
	if err := b.run(id); !errors.Is(err, asynq.SkipRetry) {
		t.Errorf("report export: got %v, want SkipRetry", err)
	}
	if e := b.export(t, id); e.Status != store.ExportQueued {
		t.Errorf("report export: got status %q, want it untouched (queued)", e.Status)
	}

	if err := b.run("0b7f4a4e-8f0e-4c1b-9d7a-3c2f1e0d9b8a"); !errors.Is(err, asynq.SkipRetry) {
		t.Errorf("unknown export: got %v, want SkipRetry", err)
	}
	if err := b.mux.ProcessTask(ctx, asynq.NewTask(tasks.TypeExportLeads, []byte(`{"export_id":1}`))); !errors.Is(err, asynq.SkipRetry) {
		t.Errorf("malformed payload: got %v, want SkipRetry", err)
	}

	// Object storage down: retried, and the export stays running meanwhile.
	down, err := objstore.New(objstore.Config{Endpoint: fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t)), AccessKey: "a", SecretKey: "b", Bucket: "cep-exports"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	h, err := handlers.NewExports(handlers.ExportsDeps{Store: b.store, Objects: down})
	if err != nil {
		t.Fatal(err)
	}
	mux := asynq.NewServeMux()
	h.Register(mux)
	id = b.create(t, store.ExportFilter{})
	if err := mux.ProcessTask(ctx, exportTask(id)); err == nil || errors.Is(err, asynq.SkipRetry) {
		t.Errorf("object storage down: got %v, want a retryable error", err)
	}
	if e := b.export(t, id); e.Status != store.ExportRunning {
		t.Errorf("object storage down: got status %q, want running until retries run out", e.Status)
	}

	// No object storage on this worker at all: failed, saying what to set.
	h, err = handlers.NewExports(handlers.ExportsDeps{Store: b.store})
	if err != nil {
		t.Fatal(err)
	}
	mux = asynq.NewServeMux()
	h.Register(mux)
	if err := mux.ProcessTask(ctx, exportTask(id)); !errors.Is(err, asynq.SkipRetry) {
		t.Errorf("no object storage: got %v, want SkipRetry", err)
	}
	if e := b.export(t, id); e.Status != store.ExportFailed || !strings.Contains(e.Error, "S3_ENDPOINT") {
		t.Errorf("no object storage: got %q %q", e.Status, e.Error)
	}
}

// procStatus reads a field of /proc/self/status in kB (Linux).
func procStatus(t *testing.T, field string) int64 {
	t.Helper()
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^` + field + `:\s+(\d+) kB`).FindSubmatch(data)
	if m == nil {
		t.Fatalf("no %s in /proc/self/status", field)
	}
	n, _ := strconv.ParseInt(string(m[1]), 10, 64)
	return n
}

// TestExportHundredThousandLeadsInBoundedMemory exports 100,000 leads and
// measures the heap the export needs: rows stream from Postgres through the
// CSV writer and a pipe into a multipart upload, so the peak is about one
// 5 MiB part whatever the row count. Not parallel: other tests would blur
// the figure.
func TestExportHundredThousandLeadsInBoundedMemory(t *testing.T) {
	const n = 100_000
	ctx := context.Background()
	url, drop, err := testenv.CreateDatabase(ctx, "exports")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(drop)
	if err := migrate(ctx, url); err != nil {
		t.Fatal(err)
	}
	b := exportsSetup(t, url, handlers.ExportsConfig{Columns: append(slices.Clone(handlers.DefaultExportColumns), "message")})
	start := time.Now()
	_, err = b.conn.Exec(ctx, `
		insert into cepjobs.leads (id, external_id, first_name, last_name, email, email_normalized, phone,
			course, campaign, site, source, message, utm,
			consent_privacy, consent_marketing, consent_text_version, consent_accepted_at,
			client_ip, client_user_agent, received_at, submitted_by, status, status_changed_at)
		select gen_random_uuid(), 'cms-' || g, 'Nombre' || g, 'Núñez García', 'lead' || g || '@example.com', 'lead' || g || '@example.com',
			'+34600' || lpad(g::text, 6, '0'), 'tecnico-marketing-digital', 'meta-otono-2026', 'sevilla', 'web-form',
			'Quiero información sobre el curso, horarios y precio ' || g, '{"source":"facebook","medium":"cpc","campaign":"otono"}',
			true, g % 2 = 0, '2026-01', timestamptz '2026-11-01 00:00:00+00' + g * interval '1 second',
			'203.0.113.7', 'Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36', timestamptz '2026-11-01 00:00:00+00' + g * interval '1 second',
			'cms', 'completed', now()
		from generate_series(1, $1::int) g`, n)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("inserted %d leads in %s", n, time.Since(start).Round(time.Millisecond))
	id := b.create(t, store.ExportFilter{})

	// Baseline after a full collection; VmHWM reset so it shows this
	// export's peak (writing 5 to clear_refs resets it, Linux 4.0+).
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	baseHeap := ms.HeapInuse
	_ = os.WriteFile("/proc/self/clear_refs", []byte("5"), 0)
	baseRSS := procStatus(t, "VmRSS")
	stop, peak := make(chan struct{}), make(chan uint64)
	go func() {
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		var top uint64
		for {
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			top = max(top, ms.HeapInuse)
			select {
			case <-stop:
				peak <- top
				return
			case <-tick.C:
			}
		}
	}()
	start = time.Now()
	err = b.run(id)
	elapsed := time.Since(start)
	close(stop)
	peakHeap := <-peak
	hwm := procStatus(t, "VmHWM")
	if err != nil {
		t.Fatal(err)
	}

	e := b.export(t, id)
	growth := int64(peakHeap) - int64(baseHeap)
	t.Logf("exported %d rows, %.1f MB in %s; heap in use: baseline %.1f MB, peak %.1f MB (+%.1f MB); RSS: baseline %.1f MB, peak (VmHWM) %.1f MB (+%.1f MB)",
		e.Rows, float64(e.Bytes)/1e6, elapsed.Round(time.Millisecond),
		float64(baseHeap)/(1<<20), float64(peakHeap)/(1<<20), float64(growth)/(1<<20),
		float64(baseRSS)/1024, float64(hwm)/1024, float64(hwm-baseRSS)/1024)
	if e.Status != store.ExportCompleted || e.Rows != n {
		t.Fatalf("export: got %q with %d rows, want completed with %d", e.Status, e.Rows, n)
	}
	if e.Bytes <= 2*objstore.PartSize {
		t.Errorf("export of %d bytes: want more than two 5 MiB parts for the test to mean anything", e.Bytes)
	}
	const limit = 64 << 20
	if growth > limit {
		t.Errorf("heap grew by %.1f MB during the export, want under %d MB", float64(growth)/(1<<20), limit>>20)
	}

	// Every row is there, in order, read back as a stream.
	o, err := b.s3.GetObject(ctx, b.objects.Bucket(), e.ObjectKey, minio.GetObjectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	sc := bufio.NewScanner(o)
	lines, last := 0, ""
	for sc.Scan() {
		lines++
		last = sc.Text()
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if lines != n+1 || !strings.HasPrefix(strings.SplitN(last, ",", 3)[1], "2026-11-02T03:46:40Z") {
		t.Errorf("object: got %d lines ending %.80q, want %d ending with the newest lead", lines, last, n+1)
	}
}
