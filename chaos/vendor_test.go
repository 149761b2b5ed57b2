package chaos_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/cepcomunicacion/cepjobs/internal/vendortest"
)

// TestVendorOutage: Mailchimp answers 503, then 429 with Retry-After, for
// two minutes (16 s in the short version) while leads stream in. Mailchimp
// deliveries back off and then succeed, nothing is sent twice, and the other
// channels go on as if nothing happened.
func TestVendorOutage(t *testing.T) {
	scenario(t)
	phase := lengths(8*time.Second, time.Minute)
	n, rate := lengths(300, 6000), lengths(20.0, 50.0)
	c := newCluster(t, clusterOpts{workers: 1})
	for _, s := range c.v.all() {
		s.Fail(vendortestDelay(10 * time.Millisecond))
	}
	ctx := context.Background()
	start := time.Now()
	c.v.mailchimp.Heal()
	c.v.mailchimp.Fail(vendortest.Fault{Status: http.StatusServiceUnavailable,
		Body: `{"type":"https://mailchimp.com/developer/marketing/docs/errors/","title":"Service Unavailable","status":503,"detail":"The service is temporarily unavailable.","instance":"x"}`})
	ld := c.stream(ctx, n, rate)
	time.Sleep(phase)
	c.v.mailchimp.Heal()
	c.v.mailchimp.Fail(vendortest.Fault{Status: http.StatusTooManyRequests, Header: http.Header{"Retry-After": {"5"}},
		Body: `{"type":"https://mailchimp.com/developer/marketing/docs/errors/","title":"Too Many Requests","status":429,"detail":"You have exceeded the limit of 10 simultaneous connections.","instance":"x"}`})
	time.Sleep(phase)
	c.v.mailchimp.Heal()
	c.v.mailchimp.Fail(vendortestDelay(10 * time.Millisecond))
	healed := time.Now()
	t.Logf("mailchimp answered 503 for %s, then 429 + Retry-After: 5 for %s; healthy again at +%s", phase, phase, healed.Sub(start).Round(time.Millisecond))

	ld.wait()
	accepted := ld.accepted()
	t.Logf("load: %s", ld.summary())
	settle := c.waitSettled(ids(accepted), lengths(3*time.Minute, 10*time.Minute))
	t.Logf("every lead settled %s after the last was accepted, %s after mailchimp recovered; %s",
		settle.Round(time.Millisecond), time.Since(healed).Round(time.Millisecond), vendorTotals(c.v))

	// Per channel: how long from the lead's arrival to its delivery.
	rows, err := c.db.Query(ctx, `
		select d.channel, count(*),
			percentile_cont(0.5) within group (order by extract(epoch from d.delivered_at - l.received_at)),
			max(extract(epoch from d.delivered_at - l.received_at)),
			max(d.attempts)
		from cepjobs.lead_deliveries d join cepjobs.leads l on l.id = d.lead_id
		where l.id = any($1::uuid[]) group by d.channel order by d.channel`, ids(accepted))
	if err != nil {
		t.Fatal(err)
	}
	p50 := map[string]float64{}
	for rows.Next() {
		var ch string
		var n, maxAttempts int
		var median, worst float64
		if err := rows.Scan(&ch, &n, &median, &worst, &maxAttempts); err != nil {
			t.Fatal(err)
		}
		p50[ch] = median
		t.Logf("  %-13s %d delivered: arrival→delivery p50 %.2f s, max %.2f s; at most %d attempts", ch, n, median, worst, maxAttempts)
		if ch != "mailchimp" && maxAttempts != 1 {
			t.Errorf("%s: a delivery took %d attempts during mailchimp's outage; other channels must not be affected", ch, maxAttempts)
		}
	}
	// Each channel is its own task: the others never wait for Mailchimp's
	// retries. (Their absolute latency is the queue's: on a saturated
	// machine every task waits its turn behind the backlog.)
	for _, ch := range []string{"meta", "welcome_email", "whatsapp"} {
		if p50[ch] >= p50["mailchimp"] {
			t.Errorf("%s: median arrival→delivery %.1f s, not shorter than mailchimp's %.1f s: it waited for mailchimp", ch, p50[ch], p50["mailchimp"])
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	o := c.check(t, accepted, 0)
	if o.attempts["mailchimp"] == 0 {
		t.Error("no mailchimp delivery needed a second attempt: the outage did not bite")
	}
	name := "Mailchimp 503 1 min then 429 1 min"
	if mode == modeShort {
		name = "Mailchimp 503 8 s then 429 8 s (short)"
	}
	t.Logf("RESULT vendor outage %s: settled %s after recovery; invariant: %s", name, time.Since(healed).Round(time.Millisecond), o)
}
