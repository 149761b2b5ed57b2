package store_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/jackc/pgx/v5"

	"github.com/cepcomunicacion/cepjobs/store"
)

func TestUpsertMetaInsightsIsIdempotent(t *testing.T) {
	t.Parallel()
	s := setup(t)
	ctx := context.Background()
	day := func(d int) time.Time { return time.Date(2029, 5, d, 0, 0, 0, 0, time.UTC) }
	first := []store.MetaInsight{
		{MetaCampaignID: "9100001", Day: day(1), CampaignName: "Otoño", Spend: "12.34", Currency: "EUR", Impressions: 1000, Clicks: 50, Leads: 5},
		{MetaCampaignID: "9100001", Day: day(2), CampaignName: "Otoño", Spend: "20", Currency: "EUR", Impressions: 1500, Clicks: 70, Leads: 7},
		{MetaCampaignID: "9100002", Day: day(2), CampaignName: "Marca", Spend: "0.9999", Currency: "EUR", Impressions: 10, Clicks: 1},
	}
	t0 := time.Date(2029, 5, 3, 5, 15, 0, 0, time.UTC)
	n, err := s.UpsertMetaInsights(ctx, first, t0)
	if err != nil {
		t.Fatal(err)
	}
	if n != 3 {
		t.Errorf("first run: got %d rows written, want 3", n)
	}
	list := func() []store.MetaInsight {
		t.Helper()
		got, err := s.MetaInsights(ctx, day(1), day(2))
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	want := make([]store.MetaInsight, len(first))
	for i, r := range first {
		r.UpdatedAt = t0
		want[i] = r
	}
	if diff := cmp.Diff(want, list(), cmpopts.EquateApproxTime(time.Microsecond)); diff != "" {
		t.Fatalf("after the first run (-want +got):\n%s", diff)
	}

	// The same numbers again: nothing is written, updated_at included.
	n, err = s.UpsertMetaInsights(ctx, first, t0.Add(24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Errorf("re-run with the same numbers: got %d rows written, want 0", n)
	}
	if diff := cmp.Diff(want, list(), cmpopts.EquateApproxTime(time.Microsecond)); diff != "" {
		t.Errorf("after the re-run (-want +got):\n%s", diff)
	}

	// Meta restates day 2: the new values overwrite, the rest stays.
	t2 := t0.Add(48 * time.Hour)
	restated := []store.MetaInsight{
		{MetaCampaignID: "9100001", Day: day(2), CampaignName: "Otoño 2029", Spend: "21.5", Currency: "EUR", Impressions: 1600, Clicks: 72, Leads: 8},
		first[2],
	}
	n, err = s.UpsertMetaInsights(ctx, restated, t2)
	if err != nil {
		t.Fatal(err)
	}
	if n != 1 {
		t.Errorf("restated run: got %d rows written, want 1", n)
	}
	want[1] = restated[0]
	want[1].UpdatedAt = t2
	if diff := cmp.Diff(want, list(), cmpopts.EquateApproxTime(time.Microsecond)); diff != "" {
		t.Errorf("after the restatement (-want +got):\n%s", diff)
	}
}

func TestQueueTasksKeysDeduplicate(t *testing.T) {
	t.Parallel()
	s := setup(t)
	ctx := context.Background()
	now := time.Date(2029, 5, 3, 10, 0, 0, 0, time.UTC)
	batch := []store.QueuedTask{
		{TaskType: "meta:leadgen", Payload: []byte(`{"leadgen_id":"71"}`), Key: "meta:leadgen:71"},
		{TaskType: "meta:leadgen", Payload: []byte(`{"leadgen_id":"72"}`), Key: "meta:leadgen:72"},
		// The same lead twice in one delivery.
		{TaskType: "meta:leadgen", Payload: []byte(`{"leadgen_id":"71"}`), Key: "meta:leadgen:71"},
		{TaskType: "backup:database", Payload: []byte(`{}`)},
	}
	ids, err := s.QueueTasks(ctx, batch, now)
	if err != nil {
		t.Fatal(err)
	}
	if len(ids) != 4 || ids[0] != store.OutboxKeyID("meta:leadgen", "meta:leadgen:71") || ids[1] != store.OutboxKeyID("meta:leadgen", "meta:leadgen:72") ||
		ids[2] != "" || ids[3] == "" {
		t.Fatalf("ids: got %q, want the two keyed ids, \"\" for the repeat, and a fresh id", ids)
	}
	// A second delivery of the same leads adds nothing.
	again, err := s.QueueTasks(ctx, batch[:3], now.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"", "", ""}, again); diff != "" {
		t.Errorf("second delivery (-want +got):\n%s", diff)
	}
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var n int
	if err := conn.QueryRow(ctx, `select count(*) from cepjobs.outbox where id = any($1::uuid[])`, []string{ids[0], ids[1], ids[3]}).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 3 {
		t.Errorf("outbox rows: got %d, want 3", n)
	}
	// Keyed ids depend on the type too.
	if store.OutboxKeyID("meta:leadgen", "k") == store.OutboxKeyID("lead:process", "k") {
		t.Error("OutboxKeyID: same id for two task types")
	}
}

func TestCampaignForMetaCampaign(t *testing.T) {
	t.Parallel()
	s := setup(t)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, `
		insert into cepjobs.campaigns (id, name, template, audience, meta_campaign_id, status, launched_by, created_at, updated_at)
		values ('camp-meta-new', 'N', 't', '{}', '9200001', 'completed', 'test', '2029-02-01', now()),
		       ('camp-meta-old', 'O', 't', '{}', '9200001', 'completed', 'test', '2029-01-01', now())`); err != nil {
		t.Fatal(err)
	}
	id, err := s.CampaignForMetaCampaign(ctx, "9200001")
	if err != nil || id != "camp-meta-old" {
		t.Errorf("got %q, %v, want camp-meta-old (the oldest)", id, err)
	}
	if _, err := s.CampaignForMetaCampaign(ctx, "9299999"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("unknown meta campaign: got %v, want ErrNotFound", err)
	}
}
