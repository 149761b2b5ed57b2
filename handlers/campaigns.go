package handlers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/hibiken/asynq"

	"github.com/cepcomunicacion/cepjobs/internal/mandrill"
	"github.com/cepcomunicacion/cepjobs/internal/ratelimit"
	"github.com/cepcomunicacion/cepjobs/internal/vendor"
	"github.com/cepcomunicacion/cepjobs/store"
	"github.com/cepcomunicacion/cepjobs/tasks"
)

// campaignStore is what the campaign handlers need of the database.
type campaignStore interface {
	Campaign(ctx context.Context, id string) (store.Campaign, error)
	FailCampaign(ctx context.Context, id string, now time.Time) (string, error)
	LaunchCampaignPage(ctx context.Context, id string, pageSize, batchSize int, now time.Time) (store.CampaignPage, error)
	PendingCampaignBatches(ctx context.Context, id string) ([]int, error)
	FinishCampaignLaunch(ctx context.Context, id string, now time.Time) (string, error)
	SettleCampaign(ctx context.Context, id string, now time.Time) (string, error)
	SkipIneligibleCampaignSends(ctx context.Context, id string, batch int, staleBefore time.Time) (int, error)
	PendingCampaignSends(ctx context.Context, id string, batch int) (string, []string, error)
	BeginCampaignSend(ctx context.Context, id, leadID string, now, staleBefore time.Time) (store.CampaignRecipient, error)
	RecordCampaignSend(ctx context.Context, id, leadID string, o store.CampaignSendOutcome, now time.Time) error
	CampaignBatchCounts(ctx context.Context, id string, batch int) (store.CampaignCounts, error)
}

// templateSender is the part of *mandrill.Client campaigns use.
type templateSender interface {
	SendTemplate(ctx context.Context, tm mandrill.TemplateMessage) (mandrill.SendResult, error)
}

// Campaign sizes, when CampaignDeps leaves them zero.
const (
	DefaultCampaignPageSize  = 1000
	DefaultCampaignBatchSize = 100
)

// CampaignSendLease is how long the recorded intent of one send keeps
// other tasks off its recipient. It is far above one attempt (a 2 s wait
// for the limiter happens before it; Mandrill calls time out after 15 s)
// and below the time asynq takes to hand a dead worker's task to another
// (60 s at least), so that task sends again to the recipients the dead
// worker left in flight — the only repeats a crash can cause.
const CampaignSendLease = 45 * time.Second

// CampaignMailOff is why a campaign cannot send without Mandrill.
const CampaignMailOff = "campaign email goes through Mailchimp Transactional: set MANDRILL_API_KEY and MANDRILL_FROM"

// CampaignDeps wires the campaign handlers.
type CampaignDeps struct {
	Store    campaignStore
	Queue    enqueuer
	Throttle throttle
	// Mandrill sends the campaign email; nil when it is not configured:
	// a launch then fails the campaign instead of queueing sends that can
	// only fail.
	Mandrill templateSender
	Logger   *slog.Logger
	Now      func() time.Time
	// PageSize recipients are recorded per step of the audience scan, and
	// cut into batches of BatchSize, one campaign:send-batch task each.
	PageSize  int
	BatchSize int
}

// Campaigns handles campaign:launch and campaign:send-batch.
type Campaigns struct{ d CampaignDeps }

// NewCampaigns returns the campaign handlers; Register puts them on a mux.
func NewCampaigns(d CampaignDeps) *Campaigns {
	if d.Now == nil {
		d.Now = time.Now
	}
	if d.PageSize <= 0 {
		d.PageSize = DefaultCampaignPageSize
	}
	if d.BatchSize <= 0 {
		d.BatchSize = DefaultCampaignBatchSize
	}
	if d.Logger == nil {
		d.Logger = slog.New(slog.DiscardHandler)
	}
	return &Campaigns{d: d}
}

// Register adds the campaign task types to mux.
func (c *Campaigns) Register(mux *asynq.ServeMux) {
	mux.HandleFunc(tasks.TypeCampaignLaunch, c.launch)
	mux.HandleFunc(tasks.TypeCampaignSendBatch, c.sendBatch)
}

func activeCampaign(status string) bool {
	return status == store.CampaignLaunching || status == store.CampaignSending
}

// launch scans the audience into campaign_sends page by page (keyset on
// the lead id, the cursor saved with each page), queues each page's
// batches, then queues every batch that still has pending recipients —
// which covers a crash between a page and its batches, and a resume — and
// marks the campaign sending (or completed). Batch TaskIDs carry the run,
// so a re-run of this task queues nothing twice.
func (c *Campaigns) launch(ctx context.Context, t *asynq.Task) error {
	p, err := tasks.Decode[tasks.CampaignLaunch](t)
	if err != nil {
		return err
	}
	id := p.CampaignID
	cp, err := c.d.Store.Campaign(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("launch campaign %s: not found: %w", id, asynq.SkipRetry)
	}
	if err != nil {
		return c.retryOrFail(ctx, id, fmt.Errorf("launch campaign %s: %w", id, err))
	}
	if !activeCampaign(cp.Status) {
		// Paused, failed or completed since this task was queued.
		c.d.Logger.Info("campaign launch has nothing to do", "campaign_id", id, "status", cp.Status)
		return nil
	}
	if c.d.Mandrill == nil {
		return c.fail(ctx, id, fmt.Errorf("launch campaign %s: %s: %w", id, CampaignMailOff, asynq.SkipRetry))
	}
	added := 0
	for status := cp.Status; status == store.CampaignLaunching; {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("launch campaign %s: %w", id, err)
		}
		page, err := c.d.Store.LaunchCampaignPage(ctx, id, c.d.PageSize, c.d.BatchSize, c.d.Now())
		if errors.Is(err, store.ErrBadCampaignAudience) {
			return c.fail(ctx, id, fmt.Errorf("launch campaign %s: %w: %w", id, err, asynq.SkipRetry))
		}
		if err != nil {
			return c.retryOrFail(ctx, id, fmt.Errorf("launch campaign %s: %w", id, err))
		}
		if !activeCampaign(page.Status) {
			c.d.Logger.Info("campaign launch stopped", "campaign_id", id, "status", page.Status)
			return nil
		}
		added += page.Added
		for _, b := range page.Batches {
			if err := c.enqueueBatch(ctx, id, b, p.Run); err != nil {
				return c.retryOrFail(ctx, id, err)
			}
		}
		if page.Done {
			break
		}
		status = page.Status
	}
	batches, err := c.d.Store.PendingCampaignBatches(ctx, id)
	if err != nil {
		return c.retryOrFail(ctx, id, fmt.Errorf("launch campaign %s: %w", id, err))
	}
	for _, b := range batches {
		if err := c.enqueueBatch(ctx, id, b, p.Run); err != nil {
			return c.retryOrFail(ctx, id, err)
		}
	}
	status, err := c.d.Store.FinishCampaignLaunch(ctx, id, c.d.Now())
	if err != nil {
		return c.retryOrFail(ctx, id, fmt.Errorf("launch campaign %s: %w", id, err))
	}
	c.d.Logger.Info("campaign launched", "campaign_id", id, "run", p.Run, "status", status,
		"recipients_added", added, "batches_pending", len(batches))
	return nil
}

func (c *Campaigns) enqueueBatch(ctx context.Context, id string, batch int, run string) error {
	task, err := tasks.NewCampaignSendBatch(tasks.CampaignSendBatch{CampaignID: id, Batch: batch, Run: run})
	if err != nil {
		return fmt.Errorf("launch campaign %s: %v: %w", id, err, asynq.SkipRetry)
	}
	if _, err := c.d.Queue.EnqueueContext(ctx, task); err != nil && !errors.Is(err, asynq.ErrTaskIDConflict) {
		return fmt.Errorf("launch campaign %s: enqueue batch %d: %w", id, batch, err)
	}
	return nil
}

// fail marks the campaign failed (a person must act; resume goes on
// afterwards) and returns err.
func (c *Campaigns) fail(ctx context.Context, id string, err error) error {
	if _, ferr := c.d.Store.FailCampaign(context.WithoutCancel(ctx), id, c.d.Now()); ferr != nil {
		return errors.Join(err, ferr)
	}
	return err
}

// retryOrFail returns err for asynq to retry, after marking the campaign
// failed when this was the task's last attempt, so that no campaign stays
// launching for ever.
func (c *Campaigns) retryOrFail(ctx context.Context, id string, err error) error {
	if final, _ := finalAttempt(ctx, err); final && !errors.Is(err, asynq.SkipRetry) {
		return c.fail(ctx, id, err)
	}
	return err
}

// batchTally counts what one attempt at a batch did.
type batchTally struct {
	Sent     int `json:"sent"`
	Failed   int `json:"failed"`
	Skipped  int `json:"skipped"`
	InFlight int `json:"in_flight,omitempty"`
}

// batchResult is the asynq task result the dashboard shows for a batch.
type batchResult struct {
	CampaignID string `json:"campaign_id"`
	Batch      int    `json:"batch"`
	// Sent … Pending count the whole batch as recorded after the attempt.
	Sent    int `json:"sent"`
	Failed  int `json:"failed"`
	Skipped int `json:"skipped"`
	Pending int `json:"pending"`
	// Attempt is what this attempt did.
	Attempt batchTally `json:"attempt"`
}

// errInFlight sends a batch back to the queue while another attempt holds
// some of its recipients: as throttling, it does not count as a failure.
type errInFlight struct {
	n  int
	th *ratelimit.Throttled
}

func (e *errInFlight) Error() string {
	return fmt.Sprintf("%d recipients are being sent by another attempt; checking again in %s", e.n, e.th.RetryAfter)
}

func (e *errInFlight) Unwrap() error { return e.th }

// sendBatch sends the batch's pending recipients one by one: take a slot
// of the shared Mandrill limit, record the intent, send, record the
// outcome. A rejected recipient is failed and the batch goes on; a
// transient error stops it for asynq to retry; an error that would fail
// every recipient (a revoked key, an unknown template) fails the campaign.
// A campaign paused or failed meanwhile stops the batch after the message
// in flight: resume queues the batch again.
func (c *Campaigns) sendBatch(ctx context.Context, t *asynq.Task) error {
	p, err := tasks.Decode[tasks.CampaignSendBatch](t)
	if err != nil {
		return err
	}
	var tally batchTally
	err = c.sendRecipients(ctx, p, &tally)
	c.writeResult(ctx, t, p, tally)
	return err
}

func (c *Campaigns) sendRecipients(ctx context.Context, p tasks.CampaignSendBatch, tally *batchTally) error {
	id := p.CampaignID
	where := fmt.Sprintf("send campaign %s batch %d", id, p.Batch)
	if c.d.Mandrill == nil {
		return c.fail(ctx, id, fmt.Errorf("%s: %s: %w", where, CampaignMailOff, asynq.SkipRetry))
	}
	now := c.d.Now()
	skipped, err := c.d.Store.SkipIneligibleCampaignSends(ctx, id, p.Batch, now.Add(-CampaignSendLease))
	if err != nil {
		return fmt.Errorf("%s: %w", where, err)
	}
	tally.Skipped += skipped
	status, leads, err := c.d.Store.PendingCampaignSends(ctx, id, p.Batch)
	if errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("%s: campaign not found: %w", where, asynq.SkipRetry)
	}
	if err != nil {
		return fmt.Errorf("%s: %w", where, err)
	}
	if !activeCampaign(status) {
		c.d.Logger.Debug("campaign batch not sent", "campaign_id", id, "batch", p.Batch, "status", status)
		return nil
	}
	for _, leadID := range leads {
		// The limiter first: a throttled task must not count an attempt.
		if err := c.d.Throttle.Wait(ctx, "mandrill", maxInlineWait); err != nil {
			return fmt.Errorf("%s: %w", where, err)
		}
		now := c.d.Now()
		r, err := c.d.Store.BeginCampaignSend(ctx, id, leadID, now, now.Add(-CampaignSendLease))
		if errors.Is(err, store.ErrNotFound) {
			continue // the lead was deleted
		}
		if err != nil {
			return fmt.Errorf("%s: %w", where, err)
		}
		switch {
		case !activeCampaign(r.CampaignStatus):
			c.d.Logger.Info("campaign batch stopped", "campaign_id", id, "batch", p.Batch, "status", r.CampaignStatus)
			return nil
		case r.Claimed:
		case r.Status != store.CampaignSendPending:
			continue // settled by another task meanwhile
		case r.InFlight:
			tally.InFlight++
			continue
		case r.Ineligible != "":
			if err := c.record(ctx, id, leadID, store.CampaignSendOutcome{Status: store.CampaignSendSkipped, Reason: r.Ineligible}); err != nil {
				return fmt.Errorf("%s: %w", where, err)
			}
			tally.Skipped++
			continue
		default:
			continue
		}
		if err := c.sendOne(ctx, p, r, tally); err != nil {
			return fmt.Errorf("%s: %w", where, err)
		}
	}
	if tally.InFlight > 0 {
		// Come back when their lease ends: if the attempt holding them
		// died, this task sends them.
		return fmt.Errorf("%s: %w", where, &errInFlight{n: tally.InFlight, th: &ratelimit.Throttled{Key: "campaign:" + id, RetryAfter: CampaignSendLease}})
	}
	status, err = c.d.Store.SettleCampaign(ctx, id, c.d.Now())
	if err != nil {
		return fmt.Errorf("%s: %w", where, err)
	}
	if status == store.CampaignCompleted {
		c.d.Logger.Info("campaign completed", "campaign_id", id)
	}
	return nil
}

// sendOne sends one claimed recipient and records the outcome; it returns
// an error only when the batch must stop.
func (c *Campaigns) sendOne(ctx context.Context, p tasks.CampaignSendBatch, r store.CampaignRecipient, tally *batchTally) error {
	id := p.CampaignID
	course := r.CampaignCourse
	if course == "" {
		course = r.LeadCourse
	}
	res, err := c.d.Mandrill.SendTemplate(ctx, mandrill.TemplateMessage{
		Template:  r.Template,
		To:        mandrill.Recipient{Email: r.Email, Name: strings.TrimSpace(r.FirstName + " " + r.LastName)},
		MergeVars: map[string]string{"FNAME": r.FirstName, "COURSE": course},
		Tags:      []string{"campaign:" + id},
		Metadata:  map[string]string{"campaign_id": id, "lead_id": r.LeadID},
	})
	switch {
	case err == nil:
		tally.Sent++
		return c.record(ctx, id, r.LeadID, store.CampaignSendOutcome{Status: store.CampaignSendSent, VendorRef: res.ID})
	case vendor.IsPermanent(err) && !campaignWide(err):
		tally.Failed++
		return c.record(ctx, id, r.LeadID, store.CampaignSendOutcome{Status: store.CampaignSendFailed, Reason: "refused by the vendor", Error: err.Error()})
	case vendor.IsPermanent(err):
		if rerr := c.record(ctx, id, r.LeadID, store.CampaignSendOutcome{Error: err.Error()}); rerr != nil {
			return rerr
		}
		return c.fail(ctx, id, fmt.Errorf("campaign stopped: %w: %w", err, asynq.SkipRetry))
	default:
		o := store.CampaignSendOutcome{Error: err.Error()}
		final, retried := finalAttempt(ctx, err)
		if final {
			o.Status, o.Reason = store.CampaignSendFailed, fmt.Sprintf("gave up after %d attempts", retried+1)
			tally.Failed++
		}
		if rerr := c.record(ctx, id, r.LeadID, o); rerr != nil {
			return rerr
		}
		if final {
			// Settle the rest one attempt each rather than leave the
			// campaign sending for ever.
			return nil
		}
		return err
	}
}

// record writes an outcome right after the vendor answered, whatever
// happened to ctx: the window in which a crash loses the record of a send
// that happened is this one write.
func (c *Campaigns) record(ctx context.Context, id, leadID string, o store.CampaignSendOutcome) error {
	return c.d.Store.RecordCampaignSend(context.WithoutCancel(ctx), id, leadID, o, c.d.Now())
}

// campaignWide reports whether a permanent error would fail every
// recipient alike, so that sending on is pointless until a person fixes
// the account or the template.
func campaignWide(err error) bool {
	var ve *vendor.Error
	if !errors.As(err, &ve) {
		return false
	}
	switch ve.Code {
	case "Invalid_Key", "Unknown_Template", "Invalid_Template", "PaymentRequired", "Unknown_Sender", "Unknown_Subaccount":
		return true
	}
	return ve.Status == 401 || ve.Status == 403
}

// writeResult stores the batch's counts as the task's result, which the
// dashboard shows: progress without personal data.
func (c *Campaigns) writeResult(ctx context.Context, t *asynq.Task, p tasks.CampaignSendBatch, tally batchTally) {
	w := t.ResultWriter()
	if w == nil {
		return
	}
	res := batchResult{CampaignID: p.CampaignID, Batch: p.Batch, Attempt: tally}
	if n, err := c.d.Store.CampaignBatchCounts(context.WithoutCancel(ctx), p.CampaignID, p.Batch); err == nil {
		res.Sent, res.Failed, res.Skipped, res.Pending = n.Sent, n.Failed, n.Skipped, n.Pending
	}
	b, err := json.Marshal(res)
	if err != nil {
		return
	}
	if _, err := w.Write(b); err != nil {
		c.d.Logger.Debug("write campaign batch result", "campaign_id", p.CampaignID, "batch", p.Batch, "err", err)
	}
}
