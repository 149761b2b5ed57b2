package chaos_test

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"testing"

	"github.com/cepcomunicacion/cepjobs/internal/mailchimp"
	"github.com/cepcomunicacion/cepjobs/internal/vendortest"
)

var channels = []string{"mailchimp", "meta", "welcome_email", "whatsapp"}

// dedups says which vendors de-duplicate a repeated call themselves:
// Mailchimp's member PUT is an upsert (and tags are idempotent), Meta drops
// a second event with the same event_id.
var dedups = map[string]bool{"mailchimp": true, "meta": true}

// outcome is what the invariant check measured.
type outcome struct {
	leads       int
	missing     int            // accepted but not in Postgres
	notComplete int            // not completed with every channel delivered
	neverCalled map[string]int // delivered but the vendor never saw a call
	repeated    map[string]int // leads whose channel was called more than once
	extraCalls  map[string]int // calls beyond one per lead
	// explained: repeats on a non-deduplicating channel whose delivery took
	// more than one attempt (a fault between the vendor's answer and our
	// record of it).
	explained   map[string]int
	unexplained map[string]int
	attempts    map[string]int // leads whose delivery took > 1 attempt
	redis       string
	archived    int
}

func (o outcome) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d leads: %d missing from Postgres, %d not completed on every channel; redis critical queue: %s\n", o.leads, o.missing, o.notComplete, o.redis)
	for _, ch := range channels {
		fmt.Fprintf(&b, "    %-13s called more than once for %d leads (%d extra calls; %s), delivery retried for %d leads, never called for %d\n",
			ch, o.repeated[ch], o.extraCalls[ch], repeatNote(ch, o), o.attempts[ch], o.neverCalled[ch])
	}
	return strings.TrimRight(b.String(), "\n")
}

func repeatNote(ch string, o outcome) string {
	if dedups[ch] {
		return "vendor de-duplicates"
	}
	return fmt.Sprintf("%d explained by a fault between answer and record, %d unexplained", o.explained[ch], o.unexplained[ch])
}

// check runs the invariant over the accepted leads. maxRepeats bounds the
// repeated calls a scenario's faults can explain on the channels whose
// vendor does not de-duplicate (0: none allowed).
func (c *cluster) check(t *testing.T, accepted []lead, maxRepeats int) outcome {
	t.Helper()
	o := outcome{leads: len(accepted), neverCalled: map[string]int{}, repeated: map[string]int{}, extraCalls: map[string]int{},
		explained: map[string]int{}, unexplained: map[string]int{}, attempts: map[string]int{}}

	type dRow struct {
		Status   string
		Attempts int
	}
	rows, err := c.db.Query(context.Background(), `
		select l.id::text, l.status,
			coalesce(jsonb_object_agg(d.channel, jsonb_build_object('Status', d.status, 'Attempts', d.attempts))
				filter (where d.channel is not null), '{}')
		from cepjobs.leads l left join cepjobs.lead_deliveries d on d.lead_id = l.id
		where l.id = any($1::uuid[]) group by l.id, l.status`, ids(accepted))
	if err != nil {
		t.Fatal(err)
	}
	type row struct {
		status string
		ds     map[string]dRow
	}
	got := map[string]row{}
	for rows.Next() {
		var id, status string
		var raw []byte
		if err := rows.Scan(&id, &status, &raw); err != nil {
			t.Fatal(err)
		}
		var ds map[string]dRow
		if err := json.Unmarshal(raw, &ds); err != nil {
			t.Fatal(err)
		}
		got[id] = row{status, ds}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}

	calls := map[string]map[string]int{ // channel -> lead id -> calls
		"mailchimp": {}, "meta": c.v.meta.Calls(), "welcome_email": {}, "whatsapp": {},
	}
	mc := c.v.mailchimp.Calls()
	md := c.v.mandrill.Calls()
	for _, l := range accepted {
		h := mailchimp.SubscriberHash(l.email)
		// A Mailchimp delivery is a PUT and a tags POST; count the PUTs.
		calls["mailchimp"][l.id] = mc["member:"+h]
		calls["welcome_email"][l.id] = md[l.email]
	}
	for k, n := range c.v.whatsapp.Calls() {
		if i := strings.Index(k, leadLink); i >= 0 {
			calls["whatsapp"][k[i+len(leadLink):]] += n
		}
	}

	var bad []string
	for _, l := range accepted {
		r, ok := got[l.id]
		if !ok {
			o.missing++
			bad = append(bad, l.id+": not in postgres")
			continue
		}
		complete := r.status == "completed" && len(r.ds) == len(channels)
		for _, ch := range channels {
			d := r.ds[ch]
			complete = complete && d.Status == "delivered"
			if d.Attempts > 1 {
				o.attempts[ch]++
			}
			n := calls[ch][l.id]
			switch {
			case n == 0 && d.Status == "delivered":
				o.neverCalled[ch]++
				bad = append(bad, fmt.Sprintf("%s: %s delivered but never called", l.id, ch))
			case n > 1:
				o.repeated[ch]++
				o.extraCalls[ch] += n - 1
				if !dedups[ch] {
					if d.Attempts > 1 {
						o.explained[ch]++
					} else {
						o.unexplained[ch]++
						bad = append(bad, fmt.Sprintf("%s: %s called %d times in one attempt", l.id, ch, n))
					}
				}
			}
		}
		if !complete {
			o.notComplete++
			bad = append(bad, fmt.Sprintf("%s: status %s, deliveries %+v", l.id, r.status, r.ds))
		}
	}
	o.redis = c.queueState()
	if q, err := c.insp.GetQueueInfo("critical"); err == nil {
		o.archived = q.Archived
	}

	sort.Strings(bad)
	if len(bad) > 10 {
		bad = append(bad[:10], fmt.Sprintf("… and %d more", len(bad)-10))
	}
	if len(bad) > 0 {
		t.Errorf("invariant broken:\n  %s", strings.Join(bad, "\n  "))
	}
	if o.archived > 0 {
		t.Errorf("%d lead tasks archived (failed for good)", o.archived)
	}
	if n := o.explained["welcome_email"] + o.explained["whatsapp"]; n > maxRepeats {
		t.Errorf("%d repeated calls to vendors that do not de-duplicate; this scenario's faults explain at most %d", n, maxRepeats)
	}
	return o
}

// vendorTotals is a one-line summary of the calls each stand-in answered.
func vendorTotals(v vendors) string {
	var parts []string
	for _, s := range []struct {
		name string
		s    *vendortest.Server
	}{{"mailchimp", v.mailchimp}, {"mandrill", v.mandrill}, {"meta", v.meta}, {"whatsapp", v.whatsapp}} {
		parts = append(parts, fmt.Sprintf("%s %d", s.name, s.s.Total()))
	}
	return "vendor calls answered: " + strings.Join(parts, ", ")
}
