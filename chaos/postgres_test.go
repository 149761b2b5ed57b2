package chaos_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/cepcomunicacion/cepjobs/internal/devenv"
)

// TestPostgresOutage: a private PostgreSQL cluster is shut down (fast mode:
// connections cut, as in a restart or failover) while leads stream in, and
// started again. While it is down the intake answers 503 with Retry-After,
// never 500, and stores nothing half; the workers retry; every lead
// accepted before or after is processed.
func TestPostgresOutage(t *testing.T) {
	scenario(t)
	ctx := context.Background()
	// Not t.TempDir: its parents are 0700, and the server runs as the
	// postgres user when the tests run as root.
	dir, err := os.MkdirTemp("", "cepjobs-chaos-pg-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	pg, err := devenv.StartPrivatePostgres(ctx, filepath.Join(dir, "pg"), slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pg.Close(context.Background()) })

	n, rate, down := lengths(300, 6000), lengths(40.0, 150.0), lengths(5*time.Second, 20*time.Second)
	c := newCluster(t, clusterOpts{dbURL: pg.URL(), workers: 1})
	for _, s := range c.v.all() {
		s.Fail(vendortestDelay(20 * time.Millisecond))
	}
	start := time.Now()
	ld := c.stream(ctx, n, rate)
	time.Sleep(lengths(3*time.Second, 10*time.Second))
	if err := pg.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	stoppedAt := time.Now()
	t.Logf("postgres stopped at +%s", stoppedAt.Sub(start).Round(time.Millisecond))
	time.Sleep(down / 2)
	ready := probe(c.api + "/readyz")
	time.Sleep(down - down/2)
	if err := pg.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("postgres back after %s; /readyz while down: %d", time.Since(stoppedAt).Round(time.Millisecond), ready)
	if ready != http.StatusServiceUnavailable {
		t.Errorf("/readyz with postgres down: got %d, want 503", ready)
	}

	ld.wait()
	accepted := ld.accepted()
	t.Logf("load: %s", ld.summary())
	codes := ld.codesCopy()
	if codes[http.StatusServiceUnavailable] == 0 {
		t.Error("no 503 while postgres was down")
	}
	if ld.noRetryAfter > 0 {
		t.Errorf("%d answers 503 without Retry-After", ld.noRetryAfter)
	}
	for code, k := range codes {
		if code != http.StatusAccepted && code != http.StatusServiceUnavailable && code != http.StatusOK {
			t.Errorf("%d answers %d while postgres went away; want 202, or 503 with Retry-After", k, code)
		}
	}
	settle := c.waitSettled(ids(accepted), lengths(3*time.Minute, 10*time.Minute))

	// Never half a lead: a lead is one row, stored whole or not at all,
	// and has no outbox row unless Redis refused its task; such a row
	// always names a stored lead (id = the lead's, payload naming it).
	var orphanRows int
	if err := c.db.QueryRow(ctx, `
		select count(*) from cepjobs.outbox o where o.task_type = 'lead:process' and not exists (
			select 1 from cepjobs.leads l where l.id = o.id
			and o.payload = convert_to('{"lead_id":"' || l.id::text || '"}', 'UTF8'))`).
		Scan(&orphanRows); err != nil {
		t.Fatal(err)
	}
	if orphanRows > 0 {
		t.Errorf("half-stored leads: %d lead:process outbox rows without their lead", orphanRows)
	}
	t.Logf("every lead settled %s after the last was accepted; %s", settle.Round(time.Millisecond), vendorTotals(c.v))
	o := c.check(t, accepted, 20) // at most the calls in flight when the connections were cut
	name := "stopped 20 s"
	if mode == modeShort {
		name = "stopped 5 s (short)"
	}
	t.Logf("RESULT postgres %s: %d answers 503 (all with Retry-After), %d × 500, no half-stored lead; invariant: %s",
		name, codes[http.StatusServiceUnavailable], codes[http.StatusInternalServerError], o)
}

func probe(url string) int {
	resp, err := http.Get(url)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}
