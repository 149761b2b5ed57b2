package main_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/jackc/pgx/v5"

	"github.com/cepcomunicacion/cepjobs/internal/redisconn"
	"github.com/cepcomunicacion/cepjobs/internal/testenv"
	"github.com/cepcomunicacion/cepjobs/internal/vendortest"
)

// privateRedis starts a redis-server of the test's own on a free loopback
// port. The campaign test runs for minutes: on the shared test Redis, any
// other run of this package meanwhile (another checkout, another
// engineer) would flush the queues under it.
func privateRedis(t *testing.T) string {
	t.Helper()
	port := testenv.FreePort(t)
	cmd := exec.Command("redis-server", "--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no")
	if err := cmd.Start(); err != nil {
		t.Fatalf("start redis-server (make test needs it on the PATH): %v", err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	url := fmt.Sprintf("redis://127.0.0.1:%d/0", port)
	opt, err := redisconn.Parse(url)
	if err != nil {
		t.Fatal(err)
	}
	rc := redisconn.Client(opt)
	defer rc.Close()
	testenv.Eventually(t, 10*time.Second, "the private redis-server answering", func() bool {
		return rc.Ping(context.Background()).Err() == nil
	})
	return url
}

// startCampaignFleet is startFleet with a token that may run campaigns, a
// Mandrill limit that never binds, 20 tasks at once per worker, and a
// Redis of its own.
func startCampaignFleet(t *testing.T, v vendors) *fleet {
	f := &fleet{redisURL: privateRedis(t)}
	port := testenv.FreePort(t)
	f.api = fmt.Sprintf("http://127.0.0.1:%d", port)
	f.env = append(append([]string{
		"REDIS_URL=" + f.redisURL, "DATABASE_URL=" + dbURL,
		fmt.Sprintf("CEPJOBS_HTTP_ADDR=127.0.0.1:%d", port),
		"CEPJOBS_API_TOKENS=cms:" + token + ":leads:write|leads:read|campaigns:write|campaigns:read",
		"CEPJOBS_RATE_LIMIT=10000", "CEPJOBS_RATE_BURST=10000",
		"CEPJOBS_TASK_CHECK_INTERVAL=50ms",
	}, v.env()...), "CEPJOBS_RATE_MANDRILL=100000", "CEPJOBS_AUTOMATION_CONCURRENCY=20")
	in := testenv.StartProc(t, "intake", bins["intake"], f.env)
	in.WaitHTTP(t, f.api+"/healthz", 30*time.Second)
	return f
}

type campaignStatus struct {
	Status       string `json:"status"`
	AudienceSize int    `json:"audience_size"`
	Batches      int    `json:"batches"`
	Sent         int    `json:"sent"`
	Failed       int    `json:"failed"`
	Skipped      int    `json:"skipped"`
	Pending      int    `json:"pending"`
}

func (f *fleet) campaign(t *testing.T, method, path string, body any) (int, campaignStatus) {
	t.Helper()
	var rd *bytes.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	} else {
		rd = bytes.NewReader(nil)
	}
	req, _ := http.NewRequest(method, f.api+path, rd)
	req.Header.Set("Authorization", "Bearer "+token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var s campaignStatus
	_ = json.NewDecoder(resp.Body).Decode(&s)
	return resp.StatusCode, s
}

// insertLeads writes n leads straight into the fleet's database, as the
// CMS's history would be, and returns their addresses.
func insertLeads(t *testing.T, conn *pgx.Conn, tag, course string, n int, marketing, erased bool) []string {
	t.Helper()
	rows, err := conn.Query(context.Background(), `
		insert into cepjobs.leads (id, first_name, last_name, email, email_normalized, course, site, source, consent_privacy,
			consent_marketing, consent_text_version, received_at, submitted_by, status, status_changed_at, erased_at)
		select gen_random_uuid(), 'Ana', 'García', e, e, $2::text, 'sevilla', 'web-form', true, $3::bool, '2026-01',
			now() - interval '1 day', 'cms', 'completed', now(), case when $4::bool then now() end
		from (select $1::text || '.' || i || '@example.com' as e from generate_series(1, $5::int) i) x
		returning email`, tag, course, marketing, erased, n)
	if err != nil {
		t.Fatal(err)
	}
	emails, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	return emails
}

// TestCampaignSurvivesAWorkerKilledMidway sends a 10,000-recipient campaign
// through the real intake and worker binaries, kills the worker (SIGKILL)
// once thousands have gone out, and lets a new worker finish: every
// consenting lead gets the email once — twice only where the kill fell
// between Mandrill's answer and our record of it — and no lead without
// marketing consent, erased, or outside the audience gets it.
func TestCampaignSurvivesAWorkerKilledMidway(t *testing.T) {
	ctx := context.Background()
	v := startVendors(t)
	// Slow enough that the kill lands mid-campaign with calls in flight.
	v.mandrill.Fail(vendortest.Fault{Delay: 20 * time.Millisecond})
	f := startCampaignFleet(t, v)

	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	tag := fmt.Sprintf("c%d", time.Now().UnixNano()%1e9)
	course := "campana-" + tag
	const audience = 10000
	start := time.Now()
	consenting := insertLeads(t, conn, tag+"-ok", course, audience, true, false)
	excluded := insertLeads(t, conn, tag+"-noconsent", course, 300, false, false)
	excluded = append(excluded, insertLeads(t, conn, tag+"-erased", course, 200, true, true)...)
	excluded = append(excluded, insertLeads(t, conn, tag+"-othercourse", "otro-"+tag, 100, true, false)...)
	t.Logf("inserted %d leads in %s", len(consenting)+len(excluded), time.Since(start).Round(time.Millisecond))

	w1, _ := f.startWorker(t, "worker-automation-1")
	id := "otono-" + tag
	code, s := f.campaign(t, "POST", "/v1/campaigns/"+id+"/launch", map[string]any{
		"name": "Otoño", "course": "tecnico-marketing-digital", "template": "otono-2026",
		"audience": map[string]any{"course": course, "campus": "sevilla"},
	})
	if code != 202 || s.Status != "launching" {
		t.Fatalf("launch: got %d %+v, want 202 launching", code, s)
	}
	launched := time.Now()

	testenv.Eventually(t, 120*time.Second, "3,000 campaign emails", func() bool { return v.mandrill.Total() >= 3000 })
	if err := w1.Cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	killedAt := time.Now()
	_, _ = w1.Wait(5 * time.Second)
	atKill := v.mandrill.Total()
	_, mid := f.campaign(t, "GET", "/v1/campaigns/"+id, nil)
	t.Logf("killed the worker %s after the launch: %d emails answered by Mandrill, %d recorded sent, %d pending",
		killedAt.Sub(launched).Round(time.Millisecond), atKill, mid.Sent, mid.Pending)
	if mid.Pending == 0 || mid.Status != "sending" {
		t.Fatalf("at the kill: got %+v, want a campaign still sending", mid)
	}
	v.mandrill.Heal()

	// asynq hands a dead worker's tasks on once their lease (30 s) has been
	// expired for 30 s more; see TestWorkerKilledMidDelivery.
	time.Sleep(time.Until(killedAt.Add(61 * time.Second)))
	restarted := time.Now()
	f.startWorker(t, "worker-automation-2")
	var got campaignStatus
	testenv.Eventually(t, 180*time.Second, "the campaign completed", func() bool {
		_, got = f.campaign(t, "GET", "/v1/campaigns/"+id, nil)
		return got.Status == "completed"
	})
	t.Logf("second worker finished %d emails in %s", audience-mid.Sent, time.Since(restarted).Round(time.Millisecond))

	want := campaignStatus{Status: "completed", AudienceSize: audience, Batches: audience / 100, Sent: audience}
	if got != want {
		t.Errorf("campaign: got %+v, want %+v", got, want)
	}
	calls := v.mandrill.Calls()
	missing, repeated := 0, 0
	for _, e := range consenting {
		switch n := calls[e]; {
		case n == 0:
			missing++
		case n > 1:
			repeated++
		}
	}
	for _, e := range excluded {
		if n := calls[e]; n != 0 {
			t.Errorf("excluded lead %s got %d emails", strings.SplitN(e, "@", 2)[0], n)
		}
	}
	var retried int
	if err := conn.QueryRow(ctx, `select count(*) from cepjobs.campaign_sends where campaign_id = $1 and attempts > 1`, id).Scan(&retried); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d consenting leads emailed once, %d twice (the kill fell between Mandrill's answer and our record), %d sends attempted again after the kill",
		audience-missing-repeated, repeated, retried)
	if missing > 0 {
		t.Errorf("%d consenting leads got no email", missing)
	}
	// One repeat at most per task in flight at the kill.
	if repeated > 20 {
		t.Errorf("%d leads emailed twice, more than the worker's concurrency (20) could explain", repeated)
	}
	if repeated > retried {
		t.Errorf("%d repeats but only %d sends attempted again: a repeat without a recorded intent", repeated, retried)
	}

	// Each batch left its counts as the task result for the dashboard.
	opt, err := redisconn.Parse(f.redisURL)
	if err != nil {
		t.Fatal(err)
	}
	rc := redisconn.Client(opt)
	defer rc.Close()
	done, err := asynq.NewInspectorFromRedisClient(rc).ListCompletedTasks("default", asynq.PageSize(200))
	if err != nil {
		t.Fatal(err)
	}
	results := 0
	for _, ti := range done {
		if ti.Type != "campaign:send-batch" || len(ti.Result) == 0 {
			continue
		}
		var r struct {
			CampaignID                     string `json:"campaign_id"`
			Sent, Failed, Skipped, Pending int
		}
		if err := json.Unmarshal(ti.Result, &r); err != nil {
			t.Fatalf("result of %s: %v", ti.ID, err)
		}
		if r.CampaignID != id || r.Sent+r.Failed+r.Skipped != 100 || r.Pending != 0 {
			t.Errorf("result of %s: got %s, want 100 settled, none pending", ti.ID, ti.Result)
		}
		results++
	}
	if results == 0 {
		t.Error("no completed campaign:send-batch task has a result")
	}
}
