package store_test

import (
	"context"
	"crypto/md5"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5"

	"github.com/cepcomunicacion/cepjobs/store"
)

func TestRollupIsIdempotentAndAnswersStats(t *testing.T) {
	s := setup(t)
	ctx := context.Background()
	day := time.Date(2031, 3, 4, 0, 0, 0, 0, time.UTC)
	var ids []string
	for i, c := range []struct{ course, campaign string }{{"a", "camp-x"}, {"a", "camp-x"}, {"b", "camp-x"}, {"b", ""}} {
		l := newLead(fmt.Sprintf("stats.%d.%d@example.com", i, time.Now().UnixNano()), c.course)
		l.Campaign, l.Site, l.ConsentMarketing = c.campaign, "sevilla", i%2 == 0
		r, err := s.SubmitLead(ctx, l, day.Add(time.Duration(i+1)*time.Hour), nil)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, r.LeadID)
	}
	// One lead the day after: not in the day's roll-up.
	if _, err := s.SubmitLead(ctx, newLead("stats.next@example.com", "a"), day.Add(25*time.Hour), nil); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.PlanDeliveries(ctx, ids[0], []store.PlannedDelivery{{Channel: "meta", Status: "pending"}, {Channel: "whatsapp", Status: "skipped", Reason: "x"}}, day); err != nil {
		t.Fatal(err)
	}
	if _, err := s.RecordDelivery(ctx, ids[0], "meta", store.DeliveryOutcome{Status: "delivered"}, day); err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, `
		insert into cepjobs.campaigns (id, name, template, audience, meta_campaign_id, status, launched_by, created_at, updated_at)
		values ('camp-x', 'X', 't', '{}', '1200', 'completed', 'test', now(), now());
		insert into cepjobs.meta_insights (meta_campaign_id, day, spend, updated_at) values ('1200', '2031-03-04', 30, now())`); err != nil {
		t.Fatal(err)
	}

	first, err := s.RollupDay(ctx, day, day.Add(30*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	snapshot := func() string {
		var out string
		_ = conn.QueryRow(ctx, `select string_agg(concat_ws('|', course, site, campaign, source, leads, marketing_optin, delivered, failed, skipped, spend, cost_per_lead), E'\n' order by course, campaign)
			from cepjobs.stats_daily where day = '2031-03-04'`).Scan(&out)
		return out
	}
	before := snapshot()
	second, err := s.RollupDay(ctx, day, day.Add(31*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if first != second || snapshot() != before {
		t.Errorf("re-running the day changed it: %d rows then %d\n%s\nthen\n%s", first, second, before, snapshot())
	}

	rows, err := s.Stats(ctx, day, day, []string{"campaign"})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]store.StatsRow{}
	for _, r := range rows {
		got[r.Group["campaign"]] = r
	}
	x := got["camp-x"]
	if x.Leads != 3 || x.Spend == nil || *x.Spend != 30 || x.CostPerLead == nil || *x.CostPerLead != 10 {
		t.Errorf("camp-x: got %+v (spend %v, cpl %v), want 3 leads, spend 30, 10 per lead", x, x.Spend, x.CostPerLead)
	}
	if got[""].Leads != 1 || got[""].Spend != nil {
		t.Errorf("no campaign: got %+v", got[""])
	}
	byCourse, err := s.Stats(ctx, day, day, []string{"course"})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]int64{"a": 2, "b": 2}
	for _, r := range byCourse {
		if r.Leads != want[r.Group["course"]] || r.Spend != nil {
			t.Errorf("course %s: got %d leads, spend %v; want %d and no spend (a campaign's spend is not split by course)", r.Group["course"], r.Leads, r.Spend, want[r.Group["course"]])
		}
	}
	total, err := s.Stats(ctx, day, day, nil)
	if err != nil || len(total) != 1 {
		t.Fatalf("total: %v %v", total, err)
	}
	if diff := cmp.Diff(map[string]int64{"meta": 1}, total[0].Delivered); diff != "" || total[0].Skipped["whatsapp"] != 1 {
		t.Errorf("channel outcomes (-want +got): %s skipped %v", diff, total[0].Skipped)
	}
}

func TestEraseLeadBlanksPersonalData(t *testing.T) {
	s := setup(t)
	ctx := context.Background()
	now := time.Now()
	// Values no other test stores: the check below scans every table.
	n := now.UnixNano()
	l := newLead(fmt.Sprintf("erase.%d@example.com", n), "c")
	l.LastName, l.Phone, l.Message, l.ExternalID = fmt.Sprintf("Apellido%d", n), fmt.Sprintf("+3469%07d", n%10000000),
		fmt.Sprintf("Llamadme %d", n), fmt.Sprintf("cms-erase-%d", n)
	l.ClientIP = netip.AddrFrom4([4]byte{198, 51, byte(n >> 8), byte(n)})
	l.ClientUserAgent = fmt.Sprintf("EraseTest/%d", n)
	r, err := s.SubmitLead(ctx, l, now, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.QueueEmail(ctx, store.Email{ToEmail: l.Email, Subject: "Hola", Text: "x"}, now, "email:send", payload); err != nil {
		t.Fatal(err)
	}
	hashRef := fmt.Sprintf("%x", md5.Sum([]byte(store.NormalizeEmail(l.Email))))
	if _, _, err := s.PlanDeliveries(ctx, r.LeadID, []store.PlannedDelivery{{Channel: "mailchimp", Status: "pending"}}, now); err != nil {
		t.Fatal(err)
	}
	if _, err := s.RecordDelivery(ctx, r.LeadID, "mailchimp", store.DeliveryOutcome{Status: "delivered", VendorRef: hashRef}, now); err != nil {
		t.Fatal(err)
	}
	out, err := s.RequestErasure(ctx, r.LeadID, "cms", now, "lead:erase", payload)
	if err != nil || out == "" {
		t.Fatalf("request erasure: %q %v", out, err)
	}
	if again, err := s.RequestErasure(ctx, r.LeadID, "cms", now, "lead:erase", payload); err != nil || again != "" {
		t.Errorf("second request: got %q %v, want no new task", again, err)
	}
	if err := s.EraseLead(ctx, r.LeadID, now); err != nil {
		t.Fatal(err)
	}
	conn, _ := pgx.Connect(ctx, dbURL)
	defer conn.Close(ctx)
	// No personal value (nor the address's MD5, Mailchimp's member id) left
	// in any table of the schema.
	tables, err := pgx.CollectRows(must(conn.Query(ctx, `select tablename from pg_tables where schemaname = 'cepjobs'`)), pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	hash := fmt.Sprintf("%x", md5.Sum([]byte(store.NormalizeEmail(l.Email))))
	for _, pii := range []string{l.Email, l.LastName, l.Phone, l.Message, l.ClientIP.String(), l.ClientUserAgent, l.ExternalID, hash} {
		for _, tbl := range tables {
			var n int
			if err := conn.QueryRow(ctx, `select count(*) from cepjobs.`+tbl+` x where x::text like '%' || $1 || '%'`, pii).Scan(&n); err != nil {
				t.Fatal(err)
			}
			if n != 0 {
				t.Errorf("%q still stored in %s after erasure", pii, tbl)
			}
		}
	}
	e, err := s.ErasureOf(ctx, r.LeadID)
	if err != nil || e.CompletedAt == nil || e.Steps["postgres"] != "anonymised" {
		t.Errorf("erasure record: %+v %v", e, err)
	}
	ls, err := s.LeadStatus(ctx, r.LeadID)
	if err != nil || ls.Course != "c" {
		t.Errorf("the anonymised row stays for statistics: %+v %v", ls, err)
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}
