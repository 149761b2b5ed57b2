package chaos_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/cepcomunicacion/cepjobs/internal/redisconn"
	"github.com/cepcomunicacion/cepjobs/internal/testenv"
	"github.com/cepcomunicacion/cepjobs/internal/vendortest"
)

const token = "chaos-token-0123456789abcdef"

// salesNumber gets every lead's WhatsApp notification (one, so a lead is
// exactly one WhatsApp call).
const salesNumber = "+34600000001"

const leadLink = "https://cms.example/leads/"

type vendors struct {
	mailchimp, mandrill, meta, whatsapp *vendortest.Server
}

func (v vendors) all() []*vendortest.Server {
	return []*vendortest.Server{v.mailchimp, v.mandrill, v.meta, v.whatsapp}
}

// clusterOpts shapes a fleet.
type clusterOpts struct {
	// dbURL is the database to use; empty: a fresh one on the shared server.
	dbURL string
	// workers is how many worker-automation processes to start.
	workers int
	// lean vendors keep counts only (long runs).
	lean bool
	env  []string
}

// cluster is one fleet under test with its own Redis and database.
type cluster struct {
	t       *testing.T
	dir     string
	dbURL   string
	redis   *testenv.RedisServer
	v       vendors
	env     []string
	intake  *proc
	api     string
	workers []*proc
	nWorker int
	db      *pgxpool.Pool
	insp    *asynq.Inspector
}

func newCluster(t *testing.T, o clusterOpts) *cluster {
	t.Helper()
	c := &cluster{t: t, dir: t.TempDir(), dbURL: o.dbURL}
	if c.dbURL == "" {
		url, drop, err := testenv.CreateDatabase(context.Background(), "chaos")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(drop)
		c.dbURL = url
	}
	c.redis = testenv.StartRedisServer(t, true)
	c.v = vendors{
		mailchimp: vendortest.Mailchimp(t, "mc-key-us7", "list-1"),
		mandrill:  vendortest.Mandrill(t, "md-key"),
		meta:      vendortest.Meta(t, "1234567890", "meta-token"),
		whatsapp:  vendortest.WhatsApp(t, "5550001", "wa-token"),
	}
	if o.lean {
		for _, s := range c.v.all() {
			s.Lean()
		}
	}
	port := testenv.FreePort(t)
	c.api = fmt.Sprintf("http://127.0.0.1:%d", port)
	level := "info"
	if mode != modeShort {
		level = "warn" // 10,000s of leads: keep the logs to what matters
	}
	c.env = append([]string{
		"REDIS_URL=" + c.redis.URL(), "DATABASE_URL=" + c.dbURL,
		fmt.Sprintf("CEPJOBS_HTTP_ADDR=127.0.0.1:%d", port),
		"CEPJOBS_API_TOKENS=cms:" + token + ":leads:write|leads:read",
		"CEPJOBS_RATE_LIMIT=100000", "CEPJOBS_RATE_BURST=100000",
		"CEPJOBS_TASK_CHECK_INTERVAL=50ms",
		"CEPJOBS_OUTBOX_INTERVAL=200ms",
		"CEPJOBS_SWEEP_AFTER=5s", "CEPJOBS_SWEEP_INTERVAL=1s",
		"CEPJOBS_LOG_LEVEL=" + level,
		"MAILCHIMP_API_KEY=mc-key-us7", "MAILCHIMP_LIST_ID=list-1", "MAILCHIMP_BASE_URL=" + c.v.mailchimp.URL,
		"MANDRILL_API_KEY=md-key", "MANDRILL_FROM=CEP Formación <no-reply@cepcomunicacion.com>", "MANDRILL_BASE_URL=" + c.v.mandrill.URL,
		"META_PIXEL_ID=1234567890", "META_ACCESS_TOKEN=meta-token", "META_BASE_URL=" + c.v.meta.URL,
		"WHATSAPP_TOKEN=wa-token", "WHATSAPP_PHONE_NUMBER_ID=5550001", "WHATSAPP_SALES_NUMBERS=" + salesNumber,
		"WHATSAPP_BASE_URL=" + c.v.whatsapp.URL, "WHATSAPP_RATE_PER_SECOND=0",
		"CEPJOBS_RATE_MAILCHIMP=0", "CEPJOBS_RATE_MANDRILL=0", "CEPJOBS_RATE_META=0",
		"CEPJOBS_WHATSAPP_PAIR_INTERVAL=0",
		"CEPJOBS_LEAD_LINK=" + leadLink + "{id}",
	}, o.env...)
	c.startIntake()
	for range o.workers {
		c.startWorker()
	}
	pool, err := pgxpool.New(context.Background(), c.dbURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	c.db = pool
	opt, _ := redisconn.Parse(c.redis.URL())
	c.insp = asynq.NewInspector(opt)
	t.Cleanup(func() { c.insp.Close() })
	return c
}

func (c *cluster) startIntake() {
	c.intake = startProc(c.t, c.dir, "intake", bins["intake"], c.env)
	c.intake.metrics = c.api
	c.intake.waitHTTP(c.t, c.api+"/healthz", 60*time.Second)
}

// startWorker starts one more worker-automation and waits until it serves.
func (c *cluster) startWorker() *proc {
	c.nWorker++
	port := testenv.FreePort(c.t)
	w := startProc(c.t, c.dir, fmt.Sprintf("worker-automation-%d", c.nWorker), bins["worker-automation"],
		append(c.env, fmt.Sprintf("CEPJOBS_AUTOMATION_METRICS_ADDR=127.0.0.1:%d", port)))
	w.metrics = fmt.Sprintf("http://127.0.0.1:%d", port)
	w.waitHTTP(c.t, w.metrics+"/healthz", 60*time.Second)
	c.workers = append(c.workers, w)
	return w
}

// queueState is what Redis holds of the critical queue (lead tasks).
func (c *cluster) queueState() string {
	q, err := c.insp.GetQueueInfo("critical")
	if err != nil {
		return "unknown: " + err.Error()
	}
	return fmt.Sprintf("pending %d, active %d, retry %d, archived %d, completed %d", q.Pending, q.Active, q.Retry, q.Archived, q.Completed)
}

// settled counts the leads that reached a final status.
func (c *cluster) settled(ids []string) (int, error) {
	var n int
	err := c.db.QueryRow(context.Background(), `
		select count(*) from cepjobs.leads
		where id = any($1::uuid[]) and status in ('completed', 'partial', 'failed')`, ids).Scan(&n)
	return n, err
}

// waitSettled waits until every lead has a final status, logging progress,
// and returns how long it took.
func (c *cluster) waitSettled(ids []string, timeout time.Duration) time.Duration {
	c.t.Helper()
	start := time.Now()
	deadline := start.Add(timeout)
	lastLog := start
	for {
		n, err := c.settled(ids)
		if err == nil && n == len(ids) {
			return time.Since(start)
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("after %s: %d of %d leads settled (err %v); unsettled: %s; redis: %s", timeout, n, len(ids), err, c.unsettled(ids), c.queueState())
		}
		if time.Since(lastLog) > 15*time.Second {
			c.t.Logf("  … %d of %d leads settled; redis critical queue: %s", n, len(ids), c.queueState())
			lastLog = time.Now()
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// drain waits up to timeout for the leads to settle and returns those that
// did.
func (c *cluster) drain(ids []string, timeout time.Duration) []string {
	c.t.Helper()
	deadline := time.Now().Add(timeout)
	lastLog := time.Now()
	for {
		n, err := c.settled(ids)
		if (err == nil && n == len(ids)) || time.Now().After(deadline) {
			break
		}
		if time.Since(lastLog) > 30*time.Second {
			c.t.Logf("  … draining: %d of %d leads settled; redis critical queue: %s", n, len(ids), c.queueState())
			lastLog = time.Now()
		}
		time.Sleep(time.Second)
	}
	rows, err := c.db.Query(context.Background(), `
		select id::text from cepjobs.leads
		where id = any($1::uuid[]) and status in ('completed', 'partial', 'failed')`, ids)
	if err != nil {
		c.t.Fatal(err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		c.t.Fatal(err)
	}
	return out
}

// unsettled describes the leads not settled yet: how many per status, and
// their pending deliveries per channel.
func (c *cluster) unsettled(ids []string) string {
	rows, err := c.db.Query(context.Background(), `
		select l.status, coalesce(d.channel, '-'), count(*)
		from cepjobs.leads l left join cepjobs.lead_deliveries d on d.lead_id = l.id and d.status = 'pending'
		where l.id = any($1::uuid[]) and l.status in ('queued', 'processing')
		group by 1, 2 order by 1, 2`, ids)
	if err != nil {
		return err.Error()
	}
	defer rows.Close()
	var parts []string
	for rows.Next() {
		var status, ch string
		var n int
		if err := rows.Scan(&status, &ch, &n); err != nil {
			return err.Error()
		}
		parts = append(parts, fmt.Sprintf("%s/pending %s: %d", status, ch, n))
	}
	return strings.Join(parts, ", ")
}

// logLines counts the lines of every process named prefix* that contain s.
func logLines(ps []*proc, s string) int {
	n := 0
	for _, p := range ps {
		n += strings.Count(p.log(), s)
	}
	return n
}

// vendortestDelay makes every call wait d before its answer, as a real
// vendor's round trip does.
func vendortestDelay(d time.Duration) vendortest.Fault { return vendortest.Fault{Delay: d} }
