package store_test

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/cepcomunicacion/cepjobs/internal/testenv"
	"github.com/cepcomunicacion/cepjobs/store"
)

var dbURL string

func TestMain(m *testing.M) {
	os.Exit(testenv.RunWithDatabase(m, "store", &dbURL, nil))
}

func setup(t *testing.T) *store.Store {
	t.Helper()
	return setupWith(t, store.Config{URL: dbURL})
}

func setupWith(t *testing.T, c store.Config) *store.Store {
	t.Helper()
	ctx := context.Background()
	s, err := store.Open(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	if _, err := s.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	return s
}

func payload(id string) ([]byte, error) { return []byte(`{"lead_id":"` + id + `"}`), nil }

func newLead(email, course string) store.NewLead {
	return store.NewLead{
		FirstName: "Ana", Email: email, Course: course, Source: "web-form",
		ConsentPrivacy: true, ConsentTextVersion: "2026-01",
		ClientIP: netip.MustParseAddr("203.0.113.7"), ClientUserAgent: "Mozilla/5.0",
		ConsentAcceptedAt: time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC),
		UTM:               map[string]string{"source": "facebook"},
		SubmittedBy:       "cms",
	}
}

func TestMigrateConcurrently(t *testing.T) {
	s := setup(t)
	ctx := context.Background()
	// Several processes start at once: every one must succeed and agree.
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Go(func() {
			o, err := store.Open(ctx, store.Config{URL: dbURL})
			if err != nil {
				errs <- err
				return
			}
			defer o.Close()
			_, err = o.Migrate(ctx)
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("concurrent migrate: %v", err)
		}
	}
	cur, latest, err := s.SchemaVersion(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if cur != latest || cur < 1 {
		t.Errorf("schema version: got %d, want %d", cur, latest)
	}
}

func TestSubmitLeadDuplicateWindow(t *testing.T) {
	s := setup(t)
	ctx := context.Background()
	now := time.Date(2026, 11, 28, 9, 0, 0, 0, time.UTC)
	email := fmt.Sprintf("ana.%d@Example.com", time.Now().UnixNano())

	first, err := s.SubmitLead(ctx, newLead(email, "curso-a"), now, nil)
	if err != nil {
		t.Fatal(err)
	}
	if first.Duplicate || first.LeadID == "" || first.Status != store.LeadQueued {
		t.Fatalf("first submission: got %+v, want a new queued lead", first)
	}

	// Same email in another case, same course, 23 h later: duplicate.
	dup, err := s.SubmitLead(ctx, newLead(store.NormalizeEmail(email), "curso-a"), now.Add(23*time.Hour), nil)
	if err != nil {
		t.Fatal(err)
	}
	if !dup.Duplicate || dup.LeadID != first.LeadID {
		t.Errorf("duplicate: got %+v, want duplicate of %s", dup, first.LeadID)
	}

	// Another course: a new lead.
	other, err := s.SubmitLead(ctx, newLead(email, "curso-b"), now.Add(time.Hour), nil)
	if err != nil {
		t.Fatal(err)
	}
	if other.Duplicate {
		t.Error("other course: got duplicate, want new lead")
	}

	// 25 h after the first: a new lead again.
	later, err := s.SubmitLead(ctx, newLead(email, "curso-a"), now.Add(25*time.Hour), nil)
	if err != nil {
		t.Fatal(err)
	}
	if later.Duplicate {
		t.Error("after the window: got duplicate, want new lead")
	}

	ls, err := s.LeadStatus(ctx, first.LeadID)
	if err != nil {
		t.Fatal(err)
	}
	want := store.LeadStatus{ID: first.LeadID, Status: "queued", Course: "curso-a", Source: "web-form", ReceivedAt: now, UpdatedAt: now, Deliveries: []store.Delivery{}}
	if diff := cmp.Diff(want, ls, cmp.Comparer(func(a, b time.Time) bool { return a.Equal(b) })); diff != "" {
		t.Errorf("lead status (-want +got):\n%s", diff)
	}
}

func TestSubmitLeadConcurrentDuplicates(t *testing.T) {
	s := setup(t)
	ctx := context.Background()
	now := time.Now()
	email := fmt.Sprintf("race.%d@example.com", now.UnixNano())
	var (
		wg  sync.WaitGroup
		mu  sync.Mutex
		ids = map[string]int{}
		new int
	)
	for range 10 {
		wg.Go(func() {
			r, err := s.SubmitLead(ctx, newLead(email, "curso-a"), now, nil)
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			defer mu.Unlock()
			ids[r.LeadID]++
			if !r.Duplicate {
				new++
			}
		})
	}
	wg.Wait()
	if len(ids) != 1 || new != 1 {
		t.Errorf("10 concurrent posts of one lead: got %d ids and %d new leads, want 1 and 1", len(ids), new)
	}
}

func TestSubmitLeadIdempotency(t *testing.T) {
	s := setup(t)
	ctx := context.Background()
	now := time.Now()
	render := func(r store.LeadSubmission) (store.Response, error) {
		return store.Response{Status: 202, Body: []byte(r.LeadID)}, nil
	}
	idem := &store.Idempotency{Principal: "cms", Key: fmt.Sprint("k-", now.UnixNano()), RequestHash: []byte("h1"), Render: render}
	email := fmt.Sprintf("idem.%d@example.com", now.UnixNano())

	first, err := s.SubmitLead(ctx, newLead(email, "c"), now, idem)
	if err != nil {
		t.Fatal(err)
	}
	again, err := s.SubmitLead(ctx, newLead(email, "c"), now, idem)
	if err != nil {
		t.Fatal(err)
	}
	if again.Replay == nil || string(again.Replay.Body) != first.LeadID || again.Replay.Status != 202 {
		t.Errorf("replay: got %+v, want the first answer (%s)", again.Replay, first.LeadID)
	}

	other := *idem
	other.RequestHash = []byte("h2")
	if _, err := s.SubmitLead(ctx, newLead(email, "c"), now, &other); !errors.Is(err, store.ErrIdempotencyConflict) {
		t.Errorf("same key, other body: got %v, want ErrIdempotencyConflict", err)
	}
}

func TestRelayOutbox(t *testing.T) {
	s := setup(t)
	ctx := context.Background()
	now := time.Now()
	rowID, err := s.QueueTask(ctx, "backup:database", []byte(`{"database":"relay"}`), now)
	if err != nil {
		t.Fatal(err)
	}

	count := func(at time.Time) (seen []string) {
		// Other tests' rows share the table: a limit above them all.
		_, _, err := s.RelayOutbox(ctx, at, 10000, func(_ context.Context, row store.OutboxRow) store.DispatchResult {
			if row.ID == rowID { // other tests' rows share the table
				seen = append(seen, row.ID)
			}
			return store.DispatchResult{Err: errors.New("redis down"), RetryAt: at.Add(time.Second)}
		})
		if err != nil {
			t.Fatal(err)
		}
		return seen
	}
	// Within the inline grace the relay leaves the row to the request.
	if got := count(now); len(got) != 0 {
		t.Errorf("relay within grace: got %v, want nothing", got)
	}
	later := now.Add(store.InlineGrace + time.Second)
	if got := count(later); len(got) != 1 || got[0] != rowID {
		t.Errorf("relay after grace: got %v, want [%s]", got, rowID)
	}
	// The failure pushed it back by a second.
	if got := count(later); len(got) != 0 {
		t.Errorf("relay right after a failure: got %v, want nothing", got)
	}
	sent, _, err := s.RelayOutbox(ctx, later.Add(2*time.Second), 10000, func(context.Context, store.OutboxRow) store.DispatchResult {
		return store.DispatchResult{}
	})
	if err != nil || sent < 1 {
		t.Fatalf("relay: sent %d, err %v", sent, err)
	}
	if got := count(later.Add(time.Hour)); len(got) != 0 {
		t.Errorf("relay after dispatch: got %v, want nothing", got)
	}
}

// A lead's task that Redis refused gets an outbox row due at once: the
// relay sends it without waiting out the inline grace, and a second refusal
// (or the relay racing the request) leaves the row as it is.
func TestLeaveToRelay(t *testing.T) {
	s := setup(t)
	ctx := context.Background()
	now := time.Now()
	r, err := s.SubmitLead(ctx, newLead(fmt.Sprintf("leave.%d@example.com", now.UnixNano()), "c"), now, nil)
	if err != nil {
		t.Fatal(err)
	}
	p, _ := payload(r.LeadID)
	for i := range 2 {
		if err := s.LeaveToRelay(ctx, r.LeadID, "lead:process", p, fmt.Sprintf("redis down %d", i), now.Add(time.Duration(i)*time.Second)); err != nil {
			t.Fatal(err)
		}
	}
	var rows []store.OutboxRow
	if _, _, err := s.RelayOutbox(ctx, now, 10000, func(_ context.Context, row store.OutboxRow) store.DispatchResult {
		if row.ID == r.LeadID {
			rows = append(rows, row)
		}
		return store.DispatchResult{}
	}); err != nil {
		t.Fatal(err)
	}
	if len(rows) != 1 || rows[0].TaskType != "lead:process" || string(rows[0].Payload) != string(p) || !rows[0].CreatedAt.Equal(now.Truncate(time.Microsecond)) || rows[0].Attempts != 1 {
		t.Fatalf("relay at once saw %+v, want the one row with its task, created %v, 1 attempt", rows, now)
	}
	sl, err := s.StaleQueuedLeads(ctx, now.Add(time.Second), store.SweepCursor{ReceivedAt: now.Add(-time.Nanosecond)}, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(sl) != 1 || sl[0].TaskID != r.LeadID || sl[0].Pending {
		t.Errorf("sweep sees %+v, want lead %s, not pending once relayed", sl, r.LeadID)
	}
}

func TestLeadStatusNotFound(t *testing.T) {
	s := setup(t)
	for _, id := range []string{"0b7f4a4e-8f0e-4c1b-9d7a-3c2f1e0d9b8a", "not-a-uuid"} {
		if _, err := s.LeadStatus(context.Background(), id); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("LeadStatus(%q): got %v, want ErrNotFound", id, err)
		}
	}
}

func TestConfigLeadCommitters(t *testing.T) {
	const url = "postgres://postgres@127.0.0.1:5432/x?sslmode=disable"
	for _, tc := range []struct {
		url        string
		maxConns   int32
		committers int
		ok         bool
	}{
		{url, 0, 0, true},
		{url, 0, 1, true},
		{url, 0, 3, true}, // pgx's default pool is at least 4
		{url, 4, 3, true},
		{url, 4, 4, false}, // the pool would have no connection left for anything else
		{url, 8, 7, true},
		{url, 0, -1, false},
		{url, 2, 2, false},
		{url, 1, 1, true}, // one committer is always allowed; it shares a pool of one
		// The pool size in the URL counts, and CEPJOBS_DB_MAX_CONNS over it.
		{url + "&pool_max_conns=2", 0, 2, false},
		{url + "&pool_max_conns=2", 8, 2, true},
	} {
		err := store.Config{URL: tc.url, MaxConns: tc.maxConns, LeadCommitters: tc.committers}.Validate()
		if (err == nil) != tc.ok {
			t.Errorf("URL %s, MaxConns %d, LeadCommitters %d: got %v, want ok=%v", tc.url, tc.maxConns, tc.committers, err, tc.ok)
		}
		if err != nil && !strings.Contains(err.Error(), "CEPJOBS_LEAD_COMMITTERS") {
			t.Errorf("error does not name the variable: %v", err)
		}
	}
}
