package handlers

import (
	"context"
	"time"

	"github.com/cepcomunicacion/cepjobs/store"
	"github.com/cepcomunicacion/cepjobs/tasks"
)

// recordPatience is how long the outcome of a vendor call is retried against
// a PostgreSQL that went away (a restart, a failover) before the task gives
// up. The vendor has answered: if the record is not written, the task's
// retry calls the vendor again. The chaos test's 20 s PostgreSQL restart
// repeated 7 calls to Mandrill and WhatsApp among 24,000 without it.
const recordPatience = 30 * time.Second

// patiently retries f while PostgreSQL is unavailable, for up to
// recordPatience.
func (a *Automation) patiently(what string, p tasks.LeadDeliver, f func() error) error {
	deadline := time.Now().Add(recordPatience)
	wait := 100 * time.Millisecond
	for {
		err := f()
		if err == nil || !store.IsUnavailable(err) || time.Now().Add(wait).After(deadline) {
			return err
		}
		a.d.Logger.Warn(what+": postgres unavailable, retrying so the vendor is not called again",
			"lead_id", p.LeadID, "channel", p.Channel, "err", err)
		time.Sleep(wait)
		wait = min(2*wait, 2*time.Second)
	}
}

// saveDetail stores a multi-call channel's progress right after a call
// (WhatsApp: which salespeople got their message), riding out PostgreSQL
// being unavailable like recordDelivery.
func (a *Automation) saveDetail(ctx context.Context, p tasks.LeadDeliver, detail []byte) error {
	ctx = context.WithoutCancel(ctx)
	return a.patiently("save delivery progress", p, func() error {
		return a.d.Store.SaveDeliveryDetail(ctx, p.LeadID, string(p.Channel), detail, a.d.Now())
	})
}

// recordDelivery writes an attempt's outcome, riding out PostgreSQL being
// unavailable for up to recordPatience.
func (a *Automation) recordDelivery(ctx context.Context, p tasks.LeadDeliver, o store.DeliveryOutcome) (string, error) {
	ctx = context.WithoutCancel(ctx)
	var status string
	err := a.patiently("record delivery", p, func() error {
		var err error
		status, err = a.d.Store.RecordDelivery(ctx, p.LeadID, string(p.Channel), o, a.d.Now())
		return err
	})
	return status, err
}
