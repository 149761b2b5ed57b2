package store_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5"

	"github.com/cepcomunicacion/cepjobs/store"
)

func exportPayload(id string) ([]byte, error) { return []byte(`{"export_id":"` + id + `"}`), nil }

func exportsConn(t *testing.T) *pgx.Conn {
	t.Helper()
	c, err := pgx.Connect(context.Background(), dbURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

func exportsPtr[T any](v T) *T { return &v }

func TestExportLifecycle(t *testing.T) {
	t.Parallel()
	s := setup(t)
	ctx := context.Background()
	now := time.Date(2026, 11, 28, 9, 0, 0, 0, time.UTC)
	f := store.ExportFilter{Course: "curso-a", From: exportsPtr(now.Add(-48 * time.Hour)), MarketingConsent: exportsPtr(false)}

	id, outboxID, err := s.CreateExport(ctx, store.NewExport{Kind: store.ExportKindLeads, Filters: f, RequestedBy: "cms"}, now, "export:leads", exportPayload)
	if err != nil {
		t.Fatal(err)
	}
	var payload string
	if err := exportsConn(t).QueryRow(ctx, `select convert_from(payload, 'utf8') from cepjobs.outbox where id = $1 and task_type = 'export:leads'`, outboxID).Scan(&payload); err != nil {
		t.Fatalf("outbox row: %v", err)
	}
	if want := `{"export_id":"` + id + `"}`; payload != want {
		t.Errorf("outbox payload: got %s, want %s", payload, want)
	}

	eqTime := cmp.Comparer(func(a, b time.Time) bool { return a.Equal(b) })
	got, err := s.Export(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	want := store.Export{ID: id, Kind: "leads", Filters: f, Status: store.ExportQueued, RequestedBy: "cms", CreatedAt: now, UpdatedAt: now}
	if diff := cmp.Diff(want, got, eqTime); diff != "" {
		t.Errorf("new export (-want +got):\n%s", diff)
	}

	// Started twice (a retry after a crash): both runs go ahead.
	for i, wantBefore := range []string{store.ExportQueued, store.ExportRunning} {
		e, err := s.StartExport(ctx, id, now.Add(time.Duration(i+1)*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		if e.Status != wantBefore {
			t.Errorf("start %d: got status before %q, want %q", i+1, e.Status, wantBefore)
		}
	}

	expires := now.Add(24 * time.Hour)
	out := store.ExportOutcome{Rows: 3, Bytes: 300, ObjectKey: "exports/leads/2026/11/28/" + id + ".csv", URL: "https://s3.example/x?sig=1", URLExpiresAt: expires}
	if err := s.CompleteExport(ctx, id, out, now.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	// Neither a late failure nor a late second completion changes it.
	if err := s.FailExport(ctx, id, "late", now.Add(2*time.Minute)); err != nil {
		t.Fatal(err)
	}
	if err := s.CompleteExport(ctx, id, store.ExportOutcome{Rows: 9, URLExpiresAt: expires}, now.Add(2*time.Minute)); err != nil {
		t.Fatal(err)
	}
	e, err := s.StartExport(ctx, id, now.Add(3*time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	finished := now.Add(time.Minute)
	want = store.Export{ID: id, Kind: "leads", Filters: f, Status: store.ExportCompleted, Rows: 3, Bytes: 300,
		ObjectKey: out.ObjectKey, URL: out.URL, URLExpiresAt: &expires, RequestedBy: "cms",
		CreatedAt: now, FinishedAt: &finished, UpdatedAt: finished}
	if diff := cmp.Diff(want, e, eqTime); diff != "" {
		t.Errorf("completed export (-want +got):\n%s", diff)
	}

	// Link renewal: nothing while the link lives, one task once it expired,
	// none while that one is pending, another if it stays pending too long.
	if o, err := s.RenewExportURL(ctx, id, expires.Add(-time.Minute), now, "export:leads", exportPayload); err != nil || o != "" {
		t.Errorf("renew a live link: got %q, %v; want nothing", o, err)
	}
	at := expires.Add(time.Second)
	o1, err := s.RenewExportURL(ctx, id, at, at, "export:leads", exportPayload)
	if err != nil || o1 == "" {
		t.Fatalf("renew an expired link: got %q, %v; want an outbox row", o1, err)
	}
	if e, _ := s.Export(ctx, id); e.URL != "" || e.URLExpiresAt != nil {
		t.Errorf("after renewal was asked: got url %q expiring %v, want none", e.URL, e.URLExpiresAt)
	}
	if o, err := s.RenewExportURL(ctx, id, at.Add(time.Minute), at.Add(time.Minute), "export:leads", exportPayload); err != nil || o != "" {
		t.Errorf("renew while pending: got %q, %v; want nothing", o, err)
	}
	later := at.Add(store.RenewStale)
	if o, err := s.RenewExportURL(ctx, id, later, later, "export:leads", exportPayload); err != nil || o == "" || o == o1 {
		t.Errorf("renew stuck for %s: got %q, %v; want a new outbox row", store.RenewStale, o, err)
	}
	if err := s.SetExportURL(ctx, id, "https://s3.example/y", later.Add(time.Hour), later); err != nil {
		t.Fatal(err)
	}
	if e, _ := s.Export(ctx, id); e.URL != "https://s3.example/y" || e.URLExpiresAt == nil || !e.URLExpiresAt.Equal(later.Add(time.Hour)) {
		t.Errorf("renewed link: got %q expiring %v", e.URL, e.URLExpiresAt)
	}

	if _, err := s.Export(ctx, "not-a-uuid"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("bad id: got %v, want ErrNotFound", err)
	}
	if _, err := s.StartExport(ctx, "0b7f4a4e-8f0e-4c1b-9d7a-3c2f1e0d9b8a", now); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("unknown id: got %v, want ErrNotFound", err)
	}
}

func TestExportFailed(t *testing.T) {
	t.Parallel()
	s := setup(t)
	ctx := context.Background()
	now := time.Now()
	id, _, err := s.CreateExport(ctx, store.NewExport{Kind: store.ExportKindLeads, RequestedBy: "cms"}, now, "export:leads", exportPayload)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.FailExport(ctx, id, "bad", now); err != nil {
		t.Fatal(err)
	}
	e, err := s.StartExport(ctx, id, now)
	if err != nil || e.Status != store.ExportFailed || e.Error != "bad" || e.FinishedAt == nil {
		t.Errorf("failed export: got %+v, %v", e, err)
	}
	if e, _ := s.Export(ctx, id); e.Status != store.ExportFailed {
		t.Errorf("start of a failed export changed it to %q", e.Status)
	}
}

func TestExportBadStoredFilter(t *testing.T) {
	t.Parallel()
	s := setup(t)
	ctx := context.Background()
	id, _, err := s.CreateExport(ctx, store.NewExport{Kind: store.ExportKindLeads, RequestedBy: "cms"}, time.Now(), "export:leads", exportPayload)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := exportsConn(t).Exec(ctx, `update cepjobs.exports set filters = '{"colour":"red"}' where id = $1`, id); err != nil {
		t.Fatal(err)
	}
	e, err := s.StartExport(ctx, id, time.Now())
	if !errors.Is(err, store.ErrBadExportFilter) || e.ID != id || e.Status != store.ExportQueued {
		t.Errorf("start with a bad filter: got %+v, %v; want the row and ErrBadExportFilter", e, err)
	}
	if e, err := s.Export(ctx, id); err != nil || e.ID != id {
		t.Errorf("load with a bad filter: got %+v, %v; want the row", e, err)
	}
}

func TestExportFilterValidate(t *testing.T) {
	t.Parallel()
	a := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name string
		f    store.ExportFilter
		ok   bool
	}{
		{"empty", store.ExportFilter{}, true},
		{"range", store.ExportFilter{From: &a, To: exportsPtr(a.Add(time.Hour))}, true},
		{"empty range", store.ExportFilter{From: &a, To: &a}, false},
		{"long course", store.ExportFilter{Course: string(make([]byte, 129))}, false},
	} {
		err := tc.f.Validate()
		if (err == nil) != tc.ok || (err != nil && !errors.Is(err, store.ErrBadExportFilter)) {
			t.Errorf("%s: got %v, want ok=%v", tc.name, err, tc.ok)
		}
	}
}

func TestExportLeadsFilters(t *testing.T) {
	t.Parallel()
	s := setup(t)
	ctx := context.Background()
	tag := fmt.Sprintf("x%d", time.Now().UnixNano())
	course := "curso-" + tag
	base := time.Date(2026, 10, 1, 12, 0, 0, 0, time.UTC)

	type spec struct {
		name                    string
		course, site, src, camp string
		marketing               bool
		day                     int
		erased                  bool
	}
	specs := []spec{
		{name: "a", course: course, site: "sevilla", src: "web-form", camp: "otono", marketing: true, day: 0},
		{name: "b", course: course, site: "madrid", src: "web-form", camp: "otono", marketing: false, day: 1},
		{name: "c", course: course, site: "sevilla", src: "meta", camp: "", marketing: true, day: 2},
		{name: "d", course: course, site: "sevilla", src: "web-form", camp: "invierno", marketing: true, day: 3},
		{name: "erased", course: course, site: "sevilla", src: "web-form", camp: "otono", marketing: true, day: 1, erased: true},
		{name: "other-course", course: "otro-" + tag, site: "sevilla", src: "web-form", camp: "otono", marketing: true, day: 1},
	}
	c := exportsConn(t)
	ids := map[string]string{}
	for _, sp := range specs {
		l := newLead(sp.name+"."+tag+"@example.com", sp.course)
		l.Site, l.Source, l.Campaign, l.ConsentMarketing = sp.site, sp.src, sp.camp, sp.marketing
		r, err := s.SubmitLead(ctx, l, base.AddDate(0, 0, sp.day), nil)
		if err != nil {
			t.Fatal(err)
		}
		ids[r.LeadID] = sp.name
		if sp.erased {
			if _, err := c.Exec(ctx, `update cepjobs.leads set first_name = '', email = '', erased_at = now() where id = $1`, r.LeadID); err != nil {
				t.Fatal(err)
			}
		}
	}

	for _, tc := range []struct {
		name string
		f    store.ExportFilter
		want []string
	}{
		{"course", store.ExportFilter{Course: course}, []string{"a", "b", "c", "d"}},
		{"campus", store.ExportFilter{Course: course, Campus: "sevilla"}, []string{"a", "c", "d"}},
		{"source", store.ExportFilter{Course: course, Source: "meta"}, []string{"c"}},
		{"campaign", store.ExportFilter{Course: course, Campaign: "otono"}, []string{"a", "b"}},
		{"marketing", store.ExportFilter{Course: course, MarketingConsent: exportsPtr(false)}, []string{"b"}},
		{"from inclusive, to exclusive", store.ExportFilter{Course: course, From: exportsPtr(base.AddDate(0, 0, 1)), To: exportsPtr(base.AddDate(0, 0, 3))}, []string{"b", "c"}},
	} {
		var got []string
		n, err := s.ExportLeads(ctx, tc.f, func(l *store.ExportedLead) error {
			got = append(got, ids[l.ID])
			return nil
		})
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if !slices.Equal(got, tc.want) || n != int64(len(tc.want)) {
			t.Errorf("%s: got %v (n=%d), want %v in order of arrival", tc.name, got, n, tc.want)
		}
	}

	// One lead, every field, including the consent evidence.
	var got store.ExportedLead
	if _, err := s.ExportLeads(ctx, store.ExportFilter{Course: course, Source: "meta"}, func(l *store.ExportedLead) error {
		got = *l
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	accepted := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
	want := store.ExportedLead{
		ID: got.ID, FirstName: "Ana", Email: "c." + tag + "@example.com", Course: course, Site: "sevilla", Source: "meta",
		UTMSource: "facebook", Status: "queued", SubmittedBy: "cms", ReceivedAt: base.AddDate(0, 0, 2),
		ConsentPrivacy: true, ConsentMarketing: true, ConsentTextVersion: "2026-01", ConsentAcceptedAt: &accepted,
		ClientIP: "203.0.113.7", ClientUserAgent: "Mozilla/5.0",
	}
	if diff := cmp.Diff(want, got, cmp.Comparer(func(a, b time.Time) bool { return a.Equal(b) })); diff != "" {
		t.Errorf("exported lead (-want +got):\n%s", diff)
	}

	// An error from the callback stops the export and comes back as is.
	stop := errors.New("stop")
	n, err := s.ExportLeads(ctx, store.ExportFilter{Course: course}, func(*store.ExportedLead) error { return stop })
	if !errors.Is(err, stop) || n != 0 {
		t.Errorf("callback error: got n=%d, %v; want 0, stop", n, err)
	}
}
