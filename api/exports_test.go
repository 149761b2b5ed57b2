package api_test

import (
	"bytes"
	"context"
	"encoding/csv"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/cepcomunicacion/cepjobs/api"
	"github.com/cepcomunicacion/cepjobs/handlers"
	"github.com/cepcomunicacion/cepjobs/internal/backup"
	"github.com/cepcomunicacion/cepjobs/internal/backup/backuptest"
	"github.com/cepcomunicacion/cepjobs/internal/objstore"
	"github.com/cepcomunicacion/cepjobs/tasks"
)

const exportsToken = "exports-token-0123456789"

func withExportsToken(c *api.Config, _ *api.Deps) {
	c.Tokens = append(c.Tokens, api.Token{Name: "reports", Secret: exportsToken, Scopes: []string{api.ScopeExportsWrite}})
}

// exportsBundle is the API with object storage configured, and the
// worker-stats export handler on the same database and S3 server.
type exportsBundle struct {
	*bundle
	worker *asynq.ServeMux
}

func exportsSetup(t *testing.T) *exportsBundle {
	t.Helper()
	s3 := backuptest.StartS3(t)
	cfg := s3.Config(t)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	bk, err := backup.New(cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	b := setup(t, withExportsToken, func(_ *api.Config, d *api.Deps) { d.Backups = bk })
	objs, err := objstore.New(objstore.Config{Endpoint: cfg.Endpoint, AccessKey: cfg.AccessKey, SecretKey: cfg.SecretKey,
		Region: cfg.Region, UseTLS: cfg.UseTLS, Bucket: cfg.Bucket + "-x"}, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s3.RemoveBucket(context.Background(), objs.Bucket()) })
	h, err := handlers.NewExports(handlers.ExportsDeps{Store: b.store, Objects: objs, Config: handlers.ExportsConfig{Bucket: objs.Bucket()}, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	mux := asynq.NewServeMux()
	h.Register(mux)
	return &exportsBundle{bundle: b, worker: mux}
}

// runPending runs every pending export:leads task through the worker
// handler, and returns how many there were.
func (b *exportsBundle) runPending(t *testing.T) int {
	t.Helper()
	pending, err := b.inspector.ListPendingTasks(tasks.QueueStats)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range pending {
		if p.Type != tasks.TypeExportLeads {
			t.Fatalf("pending task: got %s, want %s", p.Type, tasks.TypeExportLeads)
		}
		if err := b.worker.ProcessTask(context.Background(), asynq.NewTask(p.Type, p.Payload)); err != nil {
			t.Fatal(err)
		}
		if err := b.inspector.DeleteTask(tasks.QueueStats, p.ID); err != nil {
			t.Fatal(err)
		}
	}
	return len(pending)
}

func TestExportsOffWithoutObjectStorage(t *testing.T) {
	b := setup(t, withExportsToken)
	r := b.do(t, "POST", "/v1/exports", exportsToken, map[string]any{})
	if r.status != http.StatusServiceUnavailable || !strings.Contains(r.raw, "S3_ENDPOINT") {
		t.Errorf("POST without object storage: got %d %s, want 503 naming S3_ENDPOINT", r.status, r.raw)
	}
	if r := b.do(t, "GET", "/v1/exports/0b7f4a4e-8f0e-4c1b-9d7a-3c2f1e0d9b8a", exportsToken, nil); r.status != http.StatusNotFound {
		t.Errorf("GET an unknown export: got %d %s, want 404", r.status, r.raw)
	}
}

func TestCreateExportRejectsBadFilters(t *testing.T) {
	bk, err := backup.New(backup.Config{Endpoint: "127.0.0.1:9", AccessKey: "a", SecretKey: "b"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	b := setup(t, withExportsToken, func(_ *api.Config, d *api.Deps) { d.Backups = bk })
	r := b.do(t, "POST", "/v1/exports", exportsToken, map[string]any{
		"course": "no spaces please", "campus": 7, "from": "2026-12-01", "to": "2026-11-01",
		"marketing_consent": "yes", "colour": "red",
	})
	if r.status != http.StatusUnprocessableEntity {
		t.Fatalf("bad filters: got %d %s, want 422", r.status, r.raw)
	}
	got := fieldsOf(r)
	slices.Sort(got)
	if want := []string{"campus", "colour", "course", "marketing_consent", "to"}; !slices.Equal(got, want) {
		t.Errorf("422 fields: got %v, want %v (%s)", got, want, r.raw)
	}
	if r := b.do(t, "POST", "/v1/exports", exportsToken, map[string]any{"from": "yesterday"}); r.status != 422 || !slices.Equal(fieldsOf(r), []string{"from"}) {
		t.Errorf("from not a date: got %d %s", r.status, r.raw)
	}
	if r := b.do(t, "POST", "/v1/exports", writer, map[string]any{}); r.status != http.StatusForbidden {
		t.Errorf("POST without exports:write: got %d, want 403", r.status)
	}
	if r := b.do(t, "GET", "/v1/exports/x", reader, nil); r.status != http.StatusForbidden {
		t.Errorf("GET without exports:write: got %d, want 403", r.status)
	}
	if r := b.do(t, "GET", "/v1/exports/not-a-uuid", exportsToken, nil); r.status != http.StatusNotFound {
		t.Errorf("GET a malformed id: got %d, want 404", r.status)
	}
	pending, _ := b.inspector.ListPendingTasks(tasks.QueueStats)
	if len(pending) != 0 {
		t.Errorf("rejected requests queued %d tasks", len(pending))
	}
}

func TestExportEndToEnd(t *testing.T) {
	b := exportsSetup(t)
	course := "curso-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	var emails []string
	for i, marketing := range []bool{true, false, true} {
		l := validLead()
		l["course"] = course
		l["consent"].(map[string]any)["marketing"] = marketing
		if i == 2 {
			l["first_name"] = "=cmd|' /C calc'!A0"
		}
		if r := b.do(t, "POST", "/v1/leads", writer, l); r.status != http.StatusAccepted {
			t.Fatalf("POST lead: got %d %s", r.status, r.raw)
		}
		emails = append(emails, l["email"].(string))
	}
	if _, err := b.inspector.DeleteAllPendingTasks(tasks.QueueCritical); err != nil {
		t.Fatal(err)
	}

	today := time.Now().UTC().Format(time.DateOnly)
	r := b.do(t, "POST", "/v1/exports", exportsToken, map[string]any{
		"course": course, "source": "web-form", "from": today, "to": today, "marketing_consent": true,
	})
	if r.status != http.StatusAccepted || r.body["status"] != "queued" {
		t.Fatalf("POST /v1/exports: got %d %s", r.status, r.raw)
	}
	id := r.body["id"].(string)
	if got, want := r.header.Get("Location"), "/v1/exports/"+id; got != want {
		t.Errorf("Location: got %q, want %q", got, want)
	}
	pending, err := b.inspector.ListPendingTasks(tasks.QueueStats)
	if err != nil || len(pending) != 1 || pending[0].Type != tasks.TypeExportLeads || string(pending[0].Payload) != `{"export_id":"`+id+`"}` {
		t.Fatalf("queued task: got %+v, %v; want one export:leads carrying the id only", pending, err)
	}

	g := b.do(t, "GET", "/v1/exports/"+id, exportsToken, nil)
	f, _ := g.body["filters"].(map[string]any)
	tomorrow := time.Now().UTC().AddDate(0, 0, 1).Format(time.DateOnly)
	if g.status != 200 || g.body["status"] != "queued" || g.body["kind"] != "leads" || f["course"] != course ||
		f["from"] != today+"T00:00:00Z" || f["to"] != tomorrow+"T00:00:00Z" || f["marketing_consent"] != true || g.body["url"] != nil {
		t.Errorf("GET queued export: got %d %s", g.status, g.raw)
	}

	if n := b.runPending(t); n != 1 {
		t.Fatalf("ran %d tasks, want 1", n)
	}
	g = b.do(t, "GET", "/v1/exports/"+id, exportsToken, nil)
	link, _ := g.body["url"].(string)
	if g.status != 200 || g.body["status"] != "completed" || g.body["rows"] != float64(2) || g.body["url_status"] != "ready" ||
		link == "" || g.body["url_expires_at"] == nil || g.body["finished_at"] == nil {
		t.Fatalf("GET completed export: got %d %s", g.status, g.raw)
	}
	resp, err := http.Get(link)
	if err != nil {
		t.Fatal(err)
	}
	data, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || g.body["bytes"] != float64(len(data)) {
		t.Fatalf("download: got %d, %d bytes; want 200 and %v bytes", resp.StatusCode, len(data), g.body["bytes"])
	}
	recs, err := csv.NewReader(bytes.NewReader(bytes.TrimPrefix(data, []byte("\uFEFF")))).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	email, name := slices.Index(recs[0], "email"), slices.Index(recs[0], "first_name")
	if len(recs) != 3 || recs[1][email] != emails[0] || recs[2][email] != emails[2] || recs[2][name] != "'=cmd|' /C calc'!A0" {
		t.Errorf("downloaded CSV: got %q", recs)
	}
	if !slices.Contains(recs[0], "consent_text_version") || !slices.Contains(recs[0], "client_ip") {
		t.Errorf("header lacks the consent evidence: %q", recs[0])
	}

	// The link expires: GET asks worker-stats for a new one, once.
	past := time.Now().Add(-time.Hour)
	if err := b.store.SetExportURL(context.Background(), id, link, past, past); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		g = b.do(t, "GET", "/v1/exports/"+id, exportsToken, nil)
		if g.status != 200 || g.body["status"] != "completed" || g.body["url_status"] != "renewing" || g.body["url"] != nil || g.header.Get("Retry-After") == "" {
			t.Errorf("GET with an expired link: got %d %s, want renewing without a link", g.status, g.raw)
		}
	}
	if n := b.runPending(t); n != 1 {
		t.Errorf("renewals queued by two GETs: got %d, want 1", n)
	}
	g = b.do(t, "GET", "/v1/exports/"+id, exportsToken, nil)
	if g.body["url_status"] != "ready" || g.body["url"] == nil || g.body["rows"] != float64(2) {
		t.Errorf("GET after renewal: got %s", g.raw)
	}
}
