package store_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/cepcomunicacion/cepjobs/store"
)

func TestStaleQueuedLeadsPagesTheBacklog(t *testing.T) {
	s := setup(t)
	ctx := context.Background()
	// Far in the past, so no other test's lead is older.
	base := time.Date(2001, 2, 3, 4, 5, 6, 0, time.UTC)
	var ids []string
	for i := range 5 {
		res, err := s.SubmitLead(ctx, newLead(fmt.Sprintf("stale.%d.%d@example.com", i, time.Now().UnixNano()), "stale"), base.Add(time.Duration(i)*time.Second), nil)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, res.LeadID)
	}
	// The first had its task refused and relayed since; the second's is
	// still waiting for the relay; the third was sent at once (no row).
	for _, i := range []int{0, 1} {
		p, _ := payload(ids[i])
		if err := s.LeaveToRelay(ctx, ids[i], "lead:process", p, "redis down", base); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.MarkDispatched(ctx, ids[0], base); err != nil {
		t.Fatal(err)
	}
	// The fourth is processing: never a sweep candidate.
	if _, _, err := s.PlanDeliveries(ctx, ids[3], []store.PlannedDelivery{{Channel: "meta", Status: store.DeliveryPending}}, base); err != nil {
		t.Fatal(err)
	}
	before := base.Add(4 * time.Second) // the fifth is too recent

	page1, err := s.StaleQueuedLeads(ctx, before, store.SweepCursor{}, 2)
	if err != nil {
		t.Fatal(err)
	}
	last := page1[len(page1)-1]
	page2, err := s.StaleQueuedLeads(ctx, before, store.SweepCursor{ReceivedAt: last.ReceivedAt, LeadID: last.LeadID}, 2)
	if err != nil {
		t.Fatal(err)
	}
	got := append(page1, page2...)
	want := []store.StaleLead{
		{LeadID: ids[0], ReceivedAt: base, TaskID: ids[0]},
		{LeadID: ids[1], ReceivedAt: base.Add(time.Second), TaskID: ids[1], Pending: true},
		{LeadID: ids[2], ReceivedAt: base.Add(2 * time.Second), TaskID: ids[2]},
	}
	if len(got) != len(want) {
		t.Fatalf("got %+v, want %+v", got, want)
	}
	for i := range want {
		if got[i].LeadID != want[i].LeadID || !got[i].ReceivedAt.Equal(want[i].ReceivedAt) || got[i].TaskID != want[i].TaskID || got[i].Pending != want[i].Pending {
			t.Errorf("row %d: got %+v, want %+v", i, got[i], want[i])
		}
	}
}

// TestStaleQueuedLeadsUsesItsIndexes: the queued backlog must come from
// leads_queued_idx and each lead's outbox row by primary key, or each pass
// would scan both tables.
func TestStaleQueuedLeadsUsesItsIndexes(t *testing.T) {
	setup(t)
	ctx := context.Background()
	c, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	tx, err := c.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx) //nolint:errcheck // read-only
	// Small test tables would be scanned whatever the indexes; forbid
	// that to see which indexes the planner can use.
	if _, err := tx.Exec(ctx, "set local enable_seqscan = off"); err != nil {
		t.Fatal(err)
	}
	explain := func(sql string, args ...any) string {
		rows, err := tx.Query(ctx, "explain "+sql, args...)
		if err != nil {
			t.Fatal(err)
		}
		lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			t.Fatal(err)
		}
		return strings.Join(lines, "\n")
	}
	zero := "00000000-0000-0000-0000-000000000000"
	plan := explain(store.StaleQueuedLeadsSQL, time.Now(), time.Unix(0, 0), zero, 100)
	for _, idx := range []string{"leads_queued_idx", "outbox_pkey", "outbox_lead_legacy_pkey"} {
		if !strings.Contains(plan, idx) {
			t.Errorf("plan does not use %s:\n%s", idx, plan)
		}
	}
	if plan := explain(store.StalePendingDeliveriesSQL, time.Now(), time.Unix(0, 0), zero, "", 100); !strings.Contains(plan, "lead_deliveries_pending_idx") {
		t.Errorf("plan does not use lead_deliveries_pending_idx:\n%s", plan)
	}
}

// Rows the previous release writes during a rolling deploy have ids of
// their own: the trigger of migration 008 records them for the sweep, and
// leaves this release's rows (id = lead id) and unreadable payloads alone.
func TestOutboxLeadLegacyTrigger(t *testing.T) {
	s := setup(t)
	ctx := context.Background()
	now := time.Now()
	res, err := s.SubmitLead(ctx, newLead(fmt.Sprintf("legacy.%d@example.com", now.UnixNano()), "legacy"), now, nil)
	if err != nil {
		t.Fatal(err)
	}
	c, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	count := func(lead string) (n int) {
		t.Helper()
		if err := c.QueryRow(ctx, `select count(*) from cepjobs.outbox_lead_legacy where lead_id = $1`, lead).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	// This release writes a lead's row only when Redis refused the task:
	// id = lead id, payload exactly {"lead_id":"<id>"}.
	p, _ := payload(res.LeadID)
	if err := s.LeaveToRelay(ctx, res.LeadID, "lead:process", p, "redis down", now); err != nil {
		t.Fatal(err)
	}
	if n := count(res.LeadID); n != 0 {
		t.Errorf("this release's row recorded %d times, want 0", n)
	}
	// As the previous release wrote them: a row id of its own, then a
	// second row for the same lead (the first one stays the lead's).
	old1, old2 := "0190cccc-0000-7000-8000-000000000001", "0190cccc-0000-7000-8000-000000000002"
	for _, id := range []string{old1, old2} {
		if _, err := c.Exec(ctx, `insert into cepjobs.outbox (id, task_type, payload, created_at, available_at)
			values ($1, 'lead:process', $2, now(), now())`, id, `{"lead_id": "`+res.LeadID+`"}`); err != nil {
			t.Fatal(err)
		}
	}
	var got string
	if err := c.QueryRow(ctx, `select outbox_id::text from cepjobs.outbox_lead_legacy where lead_id = $1`, res.LeadID).Scan(&got); err != nil || got != old1 {
		t.Errorf("recorded %q, %v; want %s", got, err, old1)
	}
	// A payload the expression cannot turn into a uuid: stored, not recorded.
	if _, err := c.Exec(ctx, `insert into cepjobs.outbox (id, task_type, payload, created_at, available_at)
		values ('0190cccc-0000-7000-8000-000000000003', 'lead:process', $1, now(), now())`, `{"lead_id":"------------------------------------"}`); err != nil {
		t.Errorf("unreadable payload: %v", err)
	}
	sl, err := s.StaleQueuedLeads(ctx, now.Add(time.Second), store.SweepCursor{ReceivedAt: now.Add(-time.Nanosecond)}, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(sl) != 1 || sl[0].LeadID != res.LeadID || sl[0].TaskID != old1 || !sl[0].Pending {
		t.Errorf("sweep sees %+v, want lead %s with TaskID %s, pending", sl, res.LeadID, old1)
	}
}
