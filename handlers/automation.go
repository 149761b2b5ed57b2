package handlers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/cepcomunicacion/cepjobs/internal/vendor"
	"github.com/cepcomunicacion/cepjobs/store"
	"github.com/cepcomunicacion/cepjobs/tasks"
)

// automationStore is what the automation worker needs of the database.
type automationStore interface {
	LeadDetail(ctx context.Context, id string) (store.LeadDetail, error)
	PlanDeliveries(ctx context.Context, leadID string, plan []store.PlannedDelivery, now time.Time) ([]store.Delivery, string, error)
	BeginAttempt(ctx context.Context, leadID, channel string, now time.Time) (store.Delivery, error)
	RecordDelivery(ctx context.Context, leadID, channel string, o store.DeliveryOutcome, now time.Time) (string, error)
	SaveDeliveryDetail(ctx context.Context, leadID, channel string, detail json.RawMessage, now time.Time) error
	ErasureOf(ctx context.Context, leadID string) (store.Erasure, error)
	RecordErasureStep(ctx context.Context, leadID, step, outcome string, now time.Time) error
	EraseLead(ctx context.Context, leadID string, now time.Time) error
	BeginEmailAttempt(ctx context.Context, id string, now time.Time) (store.Email, error)
	RecordEmail(ctx context.Context, id, status, vendorRef, errText string, now time.Time) error
}

// enqueuer is the part of *asynq.Client the fan-out uses.
type enqueuer interface {
	EnqueueContext(ctx context.Context, t *asynq.Task, opts ...asynq.Option) (*asynq.TaskInfo, error)
}

// throttle is the shared per-vendor limiter.
type throttle interface {
	Wait(ctx context.Context, name string, maxWait time.Duration) error
}

// Channel delivers leads to one vendor.
type Channel interface {
	// Name is the channel's name in lead_deliveries.
	Name() tasks.Channel
	// RateKey names the shared rate limit the channel's calls take from.
	RateKey() string
	// Skip returns why this lead must not go to the channel ("" to deliver),
	// e.g. no marketing consent for a mailing list.
	Skip(l store.LeadDetail) string
	// Deliver makes the vendor call(s) and returns the vendor's reference.
	// progress, when the channel makes several calls, stores how far it got
	// so a retry resumes; prev.Detail holds what an earlier attempt stored.
	Deliver(ctx context.Context, l store.LeadDetail, prev store.Delivery, progress func(json.RawMessage) error) (ref string, err error)
}

// EmailSender sends a stored transactional email.
type EmailSender interface {
	SendEmail(ctx context.Context, e store.Email) (ref string, err error)
	RateKey() string
}

// AutomationDeps wires the automation worker.
type AutomationDeps struct {
	Store    automationStore
	Queue    enqueuer
	Throttle throttle
	// Channels holds the configured channels; Off gives, for each channel
	// that is not, the reason recorded when a lead skips it.
	Channels []Channel
	Off      map[tasks.Channel]string
	// Email sends email:send tasks; nil when no email transport is set.
	Email EmailSender
	// Eraser deletes erased leads from Mailchimp; nil when it is off.
	Eraser  MemberEraser
	Logger  *slog.Logger
	Metrics *Metrics
	Now     func() time.Time
}

// Automation handles lead:process, lead:deliver and email:send.
type Automation struct {
	d        AutomationDeps
	channels map[tasks.Channel]Channel
}

// maxInlineWait is how long a handler waits for a rate-limit slot before
// handing the task back to be re-scheduled.
const maxInlineWait = 2 * time.Second

// NewAutomation returns the worker's mux.
func NewAutomation(d AutomationDeps) *asynq.ServeMux {
	if d.Now == nil {
		d.Now = time.Now
	}
	a := &Automation{d: d, channels: map[tasks.Channel]Channel{}}
	for _, c := range d.Channels {
		a.channels[c.Name()] = c
	}
	mux := asynq.NewServeMux()
	mux.HandleFunc(tasks.TypeLeadProcess, a.processLead)
	mux.HandleFunc(tasks.TypeLeadDeliver, a.deliverLead)
	mux.HandleFunc(tasks.TypeEmailSend, a.sendEmail)
	mux.HandleFunc(tasks.TypeLeadErase, a.eraseLead)
	return mux
}

// processLead fans a lead out: one delivery row per channel (skipped ones
// with their reason) and one lead:deliver task per pending channel, with a
// TaskID derived from lead and channel so a re-run enqueues nothing twice.
func (a *Automation) processLead(ctx context.Context, t *asynq.Task) error {
	p, err := tasks.Decode[tasks.LeadProcess](t)
	if err != nil {
		return err
	}
	l, err := a.d.Store.LeadDetail(ctx, p.LeadID)
	if errors.Is(err, store.ErrNotFound) {
		// Erased (RGPD) or never committed: nothing to deliver, ever.
		return fmt.Errorf("process lead %s: lead not found: %w", p.LeadID, asynq.SkipRetry)
	}
	if err != nil {
		return err
	}
	var plan []store.PlannedDelivery
	for _, ch := range tasks.Channels {
		pd := store.PlannedDelivery{Channel: string(ch), Status: store.DeliveryPending}
		if c, ok := a.channels[ch]; !ok {
			pd.Status, pd.Reason = store.DeliverySkipped, a.offReason(ch)
		} else if why := c.Skip(l); why != "" {
			pd.Status, pd.Reason = store.DeliverySkipped, why
		}
		plan = append(plan, pd)
	}
	rows, status, err := a.d.Store.PlanDeliveries(ctx, l.ID, plan, a.d.Now())
	if err != nil {
		return err
	}
	for _, r := range rows {
		if r.Status != store.DeliveryPending {
			continue
		}
		task, err := tasks.NewLeadDeliver(tasks.LeadDeliver{LeadID: l.ID, Channel: tasks.Channel(r.Channel)})
		if err != nil {
			return fmt.Errorf("process lead %s: %v: %w", l.ID, err, asynq.SkipRetry)
		}
		if _, err := a.d.Queue.EnqueueContext(ctx, task); err != nil && !errors.Is(err, asynq.ErrTaskIDConflict) {
			return fmt.Errorf("process lead %s: enqueue %s delivery: %w", l.ID, r.Channel, err)
		}
	}
	a.d.Logger.Info("lead fanned out", "lead_id", l.ID, "status", status, "deliveries", len(rows))
	return nil
}

func (a *Automation) offReason(ch tasks.Channel) string {
	if r := a.d.Off[ch]; r != "" {
		return r
	}
	return "not configured"
}

// deliverLead delivers one lead to one channel, at most once per success:
// a delivery that is no longer pending is not attempted again, whatever
// retries, duplicates or re-runs bring the task back.
func (a *Automation) deliverLead(ctx context.Context, t *asynq.Task) error {
	p, err := tasks.Decode[tasks.LeadDeliver](t)
	if err != nil {
		return err
	}
	ch := string(p.Channel)
	c, ok := a.channels[p.Channel]
	if !ok {
		// Configuration changed since the fan-out.
		return a.finish(ctx, p, store.DeliveryOutcome{Status: store.DeliverySkipped, Reason: a.offReason(p.Channel)})
	}
	// The limiter first: a throttled task must not count an attempt.
	if err := a.d.Throttle.Wait(ctx, c.RateKey(), maxInlineWait); err != nil {
		return fmt.Errorf("deliver %s: %w", ch, err)
	}
	prev, err := a.d.Store.BeginAttempt(ctx, p.LeadID, ch, a.d.Now())
	if errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("deliver %s: no delivery row for lead %s: %w", ch, p.LeadID, asynq.SkipRetry)
	}
	if err != nil {
		return err
	}
	if prev.Status != store.DeliveryPending {
		a.d.Logger.Debug("delivery already settled", "lead_id", p.LeadID, "channel", ch, "status", prev.Status)
		return nil
	}
	l, err := a.d.Store.LeadDetail(ctx, p.LeadID)
	if errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("deliver %s: lead %s not found: %w", ch, p.LeadID, asynq.SkipRetry)
	}
	if err != nil {
		return err
	}
	progress := func(detail json.RawMessage) error { return a.saveDetail(ctx, p, detail) }
	start := time.Now()
	ref, err := c.Deliver(ctx, l, prev, progress)
	a.d.Metrics.vendorLatency.WithLabelValues(ch).Observe(time.Since(start).Seconds())

	switch {
	case err == nil:
		return a.finish(ctx, p, store.DeliveryOutcome{Status: store.DeliveryDelivered, VendorRef: ref})
	case vendor.IsPermanent(err):
		if ferr := a.finish(ctx, p, store.DeliveryOutcome{Status: store.DeliveryFailed, Error: err.Error(), Reason: "permanent vendor error"}); ferr != nil {
			return ferr
		}
		return fmt.Errorf("deliver %s: %w: %w", ch, err, asynq.SkipRetry)
	default:
		o := store.DeliveryOutcome{Error: err.Error()}
		if final, retried := finalAttempt(ctx, err); final {
			o.Status, o.Reason = store.DeliveryFailed, fmt.Sprintf("gave up after %d attempts", retried+1)
		}
		if ferr := a.finish(context.WithoutCancel(ctx), p, o); ferr != nil {
			return ferr
		}
		if IsThrottled(err) {
			a.d.Metrics.deliveries.WithLabelValues(ch, "throttled").Inc()
		}
		return fmt.Errorf("deliver %s: %w", ch, err)
	}
}

// finish records an outcome right after the vendor answered: the window in
// which a crash loses the record of a call that happened is this one write.
func (a *Automation) finish(ctx context.Context, p tasks.LeadDeliver, o store.DeliveryOutcome) error {
	status, err := a.recordDelivery(ctx, p, o)
	if err != nil {
		return err
	}
	if o.Status != "" {
		a.d.Metrics.deliveries.WithLabelValues(string(p.Channel), o.Status).Inc()
		a.d.Logger.Info("delivery settled", "lead_id", p.LeadID, "channel", p.Channel, "status", o.Status, "lead_status", status)
	} else {
		a.d.Metrics.deliveries.WithLabelValues(string(p.Channel), "retry").Inc()
	}
	return nil
}

// sendEmail sends a stored transactional email once.
func (a *Automation) sendEmail(ctx context.Context, t *asynq.Task) error {
	p, err := tasks.Decode[tasks.EmailSend](t)
	if err != nil {
		return err
	}
	if a.d.Email == nil {
		return fmt.Errorf("send email %s: no email transport configured (set MANDRILL_API_KEY and MANDRILL_FROM, or SMTP_URL): %w", p.EmailID, asynq.SkipRetry)
	}
	if err := a.d.Throttle.Wait(ctx, a.d.Email.RateKey(), maxInlineWait); err != nil {
		return fmt.Errorf("send email: %w", err)
	}
	e, err := a.d.Store.BeginEmailAttempt(ctx, p.EmailID, a.d.Now())
	if errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("send email %s: not found: %w", p.EmailID, asynq.SkipRetry)
	}
	if err != nil {
		return err
	}
	if e.Status != store.EmailPending {
		return nil
	}
	ref, err := a.d.Email.SendEmail(ctx, e)
	now := a.d.Now()
	switch {
	case err == nil:
		a.d.Metrics.emails.WithLabelValues(store.EmailSent).Inc()
		return a.d.Store.RecordEmail(context.WithoutCancel(ctx), e.ID, store.EmailSent, ref, "", now)
	case vendor.IsPermanent(err):
		a.d.Metrics.emails.WithLabelValues(store.EmailFailed).Inc()
		if rerr := a.d.Store.RecordEmail(context.WithoutCancel(ctx), e.ID, store.EmailFailed, "", err.Error(), now); rerr != nil {
			return rerr
		}
		return fmt.Errorf("send email %s: %w: %w", e.ID, err, asynq.SkipRetry)
	default:
		status := ""
		if final, _ := finalAttempt(ctx, err); final {
			status = store.EmailFailed
		}
		if rerr := a.d.Store.RecordEmail(context.WithoutCancel(ctx), e.ID, status, "", err.Error(), now); rerr != nil {
			return rerr
		}
		return fmt.Errorf("send email %s: %w", e.ID, err)
	}
}

// Metrics are the automation worker's own counters.
type Metrics struct {
	deliveries    *prometheus.CounterVec
	vendorLatency *prometheus.HistogramVec
	emails        *prometheus.CounterVec
}

// NewMetrics registers the worker metrics on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		deliveries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cepjobs_deliveries_total",
			Help: "Lead delivery outcomes by channel: delivered, skipped, failed, retry, throttled.",
		}, []string{"channel", "outcome"}),
		vendorLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "cepjobs_vendor_request_duration_seconds",
			Help:    "Time spent in vendor calls per delivery attempt, by channel.",
			Buckets: []float64{.01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"channel"}),
		emails: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cepjobs_emails_total",
			Help: "Transactional emails by outcome.",
		}, []string{"outcome"}),
	}
	reg.MustRegister(m.deliveries, m.vendorLatency, m.emails)
	return m
}
