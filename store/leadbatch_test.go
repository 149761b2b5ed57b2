package store_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/cepcomunicacion/cepjobs/store"
)

// TestSubmitLeadBatches runs with the default single committer and with
// three, whose batches commit side by side and must not deadlock or let a
// duplicate through between them.
func TestSubmitLeadBatches(t *testing.T) {
	for _, committers := range []int{1, 3} {
		t.Run(fmt.Sprint(committers, "committers"), func(t *testing.T) {
			testSubmitLeadBatches(t, setupWith(t, store.Config{URL: dbURL, MaxConns: 6, LeadCommitters: committers}))
		})
	}
}

// testSubmitLeadBatches posts many leads at once, so they share
// transactions: distinct leads, repeats of one email and course, retries
// with one Idempotency-Key, a reused key with another body, and one lead the
// database refuses. Every submission must get the answer it would get alone.
func testSubmitLeadBatches(t *testing.T, s *store.Store) {
	ctx := context.Background()
	now := time.Now().UTC().Truncate(time.Microsecond)
	run := fmt.Sprint(now.UnixNano())
	render := func(r store.LeadSubmission) (store.Response, error) {
		return store.Response{Status: 202, Body: []byte(r.LeadID)}, nil
	}

	type outcome struct {
		res store.LeadSubmission
		err error
	}
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		distinct = map[int]outcome{}
		repeats  []outcome
		retries  []outcome
		conflict []outcome
		refused  outcome
	)
	record := func(dst *[]outcome, o outcome) { mu.Lock(); *dst = append(*dst, o); mu.Unlock() }
	idem := func(hash string) *store.Idempotency {
		return &store.Idempotency{Principal: "cms", Key: "batch-" + run, RequestHash: []byte(hash), Render: render}
	}
	start := make(chan struct{})
	for i := range 150 {
		wg.Go(func() {
			<-start
			r, err := s.SubmitLead(ctx, newLead(fmt.Sprintf("b%d.%s@example.com", i, run), "curso-a"), now, nil)
			mu.Lock()
			distinct[i] = outcome{r, err}
			mu.Unlock()
		})
	}
	for range 20 {
		wg.Go(func() {
			<-start
			r, err := s.SubmitLead(ctx, newLead("same."+run+"@example.com", "curso-a"), now, nil)
			record(&repeats, outcome{r, err})
		})
	}
	for range 10 {
		wg.Go(func() {
			<-start
			r, err := s.SubmitLead(ctx, newLead("idem."+run+"@example.com", "curso-b"), now, idem("h1"))
			record(&retries, outcome{r, err})
		})
	}
	wg.Go(func() {
		<-start
		bad := newLead("nul."+run+"@example.com", "curso-a")
		bad.FirstName = "An\x00a" // PostgreSQL text refuses NUL
		r, err := s.SubmitLead(ctx, bad, now, nil)
		mu.Lock()
		refused = outcome{r, err}
		mu.Unlock()
	})
	close(start)
	wg.Wait()
	// The key again with another body, while more leads share the batch.
	for i := range 20 {
		wg.Go(func() {
			_, _ = s.SubmitLead(ctx, newLead(fmt.Sprintf("c%d.%s@example.com", i, run), "curso-c"), now, nil)
		})
	}
	r, err := s.SubmitLead(ctx, newLead("other."+run+"@example.com", "curso-b"), now, idem("h2"))
	record(&conflict, outcome{r, err})
	wg.Wait()

	ids := map[string]bool{}
	for i, o := range distinct {
		if o.err != nil || o.res.Duplicate || o.res.LeadID == "" || o.res.Status != store.LeadQueued {
			t.Fatalf("distinct lead %d: got %+v %v, want a new queued lead", i, o.res, o.err)
		}
		ids[o.res.LeadID] = true
	}
	if len(ids) != 150 {
		t.Errorf("150 distinct leads got %d ids", len(ids))
	}
	newOnes, repeatIDs := 0, map[string]bool{}
	for _, o := range repeats {
		if o.err != nil {
			t.Fatalf("repeat: %v", o.err)
		}
		repeatIDs[o.res.LeadID] = true
		if !o.res.Duplicate {
			newOnes++
		}
	}
	if newOnes != 1 || len(repeatIDs) != 1 {
		t.Errorf("20 posts of one lead: %d new, %d ids; want 1 and 1", newOnes, len(repeatIDs))
	}
	var firstID string
	replays := 0
	for _, o := range retries {
		if o.err != nil {
			t.Fatalf("retry with the same key: %v", o.err)
		}
		if o.res.Replay != nil {
			replays++
			continue
		}
		firstID = o.res.LeadID
	}
	if replays != 9 || firstID == "" {
		t.Errorf("10 posts with one key: %d replays, first id %q; want 9 replays of one answer", replays, firstID)
	}
	for _, o := range retries {
		if o.res.Replay != nil && string(o.res.Replay.Body) != firstID {
			t.Errorf("replay body %q, want the first answer %q", o.res.Replay.Body, firstID)
		}
	}
	if len(conflict) != 1 || !errors.Is(conflict[0].err, store.ErrIdempotencyConflict) {
		t.Errorf("reused key with another body: got %+v, want ErrIdempotencyConflict", conflict)
	}
	if refused.err == nil {
		t.Errorf("lead with a NUL byte: got %+v, want an error", refused.res)
	}

	// What the batches stored is what one submission alone stores.
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var n, outbox int
	if err := conn.QueryRow(ctx, `select count(*) from cepjobs.leads where email like '%.'||$1||'@example.com'`, run).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if err := conn.QueryRow(ctx, `select count(*) from cepjobs.outbox o join cepjobs.leads l on o.payload = convert_to('{"lead_id":"'||l.id||'"}', 'UTF8')
		where l.email like '%.'||$1||'@example.com'`, run).Scan(&outbox); err != nil {
		t.Fatal(err)
	}
	// A lead's task is the caller's to send; an outbox row is written only
	// when Redis refuses it (Dispatcher.SendLead).
	if n != 172 || outbox != 0 {
		t.Errorf("stored %d leads and %d outbox rows, want 172 (150+20 distinct, 1 repeated, 1 with a key) and none", n, outbox)
	}
	var (
		last, phone, campaign               *string
		utm, ip, textVersion, ua, submitted string
		accepted                            time.Time
		privacy, marketing                  bool
		received, changed                   time.Time
		status                              string
	)
	err = conn.QueryRow(ctx, `select last_name, phone, campaign, utm::text, host(client_ip), consent_text_version, client_user_agent,
		submitted_by, consent_accepted_at, consent_privacy, consent_marketing, received_at, status_changed_at, status
		from cepjobs.leads where id = $1`, distinct[7].res.LeadID).
		Scan(&last, &phone, &campaign, &utm, &ip, &textVersion, &ua, &submitted, &accepted, &privacy, &marketing, &received, &changed, &status)
	if err != nil {
		t.Fatal(err)
	}
	if last != nil || phone != nil || campaign != nil || utm != `{"source": "facebook"}` || ip != "203.0.113.7" ||
		textVersion != "2026-01" || ua != "Mozilla/5.0" || submitted != "cms" || !privacy || marketing ||
		!accepted.Equal(time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)) || !received.Equal(now) || !changed.Equal(now) || status != "queued" {
		t.Errorf("stored lead: last %v phone %v campaign %v utm %s ip %s text %s ua %s by %s accepted %s privacy %v marketing %v received %s changed %s status %s",
			last, phone, campaign, utm, ip, textVersion, ua, submitted, accepted, privacy, marketing, received, changed, status)
	}
}

// TestRefusedBatchKeepsItsConnection: a batch the server refuses is rolled
// back on its connection, which goes back to the pool and serves the next
// batch (pgxpool would close a connection returned inside a transaction,
// and every refused lead would cost a new connection).
func TestRefusedBatchKeepsItsConnection(t *testing.T) {
	s := setup(t) // migrating opened the pool's one connection
	ctx := context.Background()
	run := fmt.Sprint(time.Now().UnixNano())
	before := s.NewConns()
	bad := newLead("nul."+run+"@example.com", "curso-a")
	bad.FirstName = "An\x00a" // PostgreSQL text refuses NUL
	if _, err := s.SubmitLead(ctx, bad, time.Now(), nil); err == nil {
		t.Fatal("lead with a NUL byte: stored, want an error")
	}
	if _, err := s.SubmitLead(ctx, newLead("ok."+run+"@example.com", "curso-a"), time.Now(), nil); err != nil {
		t.Fatal(err)
	}
	if n := s.NewConns() - before; n != 0 {
		t.Errorf("the pool opened %d connections after a refused batch, want 0 (the same one serves on)", n)
	}
}

// TestSubmitLeadCancelled: a caller that gives up gets its context's error.
func TestSubmitLeadCancelled(t *testing.T) {
	s := setup(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := s.SubmitLead(ctx, newLead("gone@example.com", "c"), time.Now(), nil)
	if !errors.Is(err, context.Canceled) {
		t.Errorf("got %v, want context.Canceled", err)
	}
}
