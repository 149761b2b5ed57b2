package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// Campaign statuses.
//
//	launching  the audience is being scanned into campaign_sends (sends may
//	           already be going out)
//	sending    the scan is done; batches are sending
//	paused     stopped by a person; resume goes on where it stopped
//	completed  no recipient is pending
//	failed     stopped by an error a person must fix (no mail transport, a
//	           revoked key, an unknown template); resume goes on once fixed
const (
	CampaignLaunching = "launching"
	CampaignSending   = "sending"
	CampaignPaused    = "paused"
	CampaignCompleted = "completed"
	CampaignFailed    = "failed"
)

// Campaign send statuses (one row per recipient).
const (
	CampaignSendPending = "pending"
	CampaignSendSent    = "sent"
	CampaignSendSkipped = "skipped"
	CampaignSendFailed  = "failed"
)

// Keyset positions of the audience scan. No uuid v4 or v7 is the nil or the
// max uuid, so these never collide with a lead id; scanDone in
// launch_cursor means the scan reached the end (a resume does not scan
// again, a relaunch resets the cursor).
const (
	scanStart = "00000000-0000-0000-0000-000000000000"
	scanDone  = "ffffffff-ffff-ffff-ffff-ffffffffffff"
)

var (
	// ErrCampaignState: the campaign's status does not allow the change
	// asked for. The error is a *CampaignStateError.
	ErrCampaignState = errors.New("campaign status does not allow this")
	// ErrBadCampaignAudience: a stored audience cannot be read; running the
	// launch again will not help.
	ErrBadCampaignAudience = errors.New("bad campaign audience")
)

// CampaignStateError says which change the campaign's status refused.
type CampaignStateError struct {
	Action string // "pause", "resume", "relaunch with a different definition"
	Status string
}

func (e *CampaignStateError) Error() string {
	return fmt.Sprintf("cannot %s a campaign that is %s", e.Action, e.Status)
}

// Is makes errors.Is(err, ErrCampaignState) hold.
func (e *CampaignStateError) Is(target error) bool { return target == ErrCampaignState }

// Audience is the filter the CMS sent for a campaign, stored as given.
// Empty fields select everything. Marketing consent and not being erased
// are not part of it: they always apply.
type Audience struct {
	Course string `json:"course,omitempty"`
	Campus string `json:"campus,omitempty"` // leads.site
	Source string `json:"source,omitempty"`
	// From and To bound received_at, both inclusive: RFC 3339 times or
	// YYYY-MM-DD dates (whole UTC days).
	From string `json:"from,omitempty"`
	To   string `json:"to,omitempty"`
}

// ParseAudienceBound reads a from (upper false) or to (upper true) bound
// and returns it as an instant of a half-open interval: for from, the first
// instant included; for to, the first instant excluded (the next day's
// midnight for a date, the next microsecond — PostgreSQL's resolution —
// for a time).
func ParseAudienceBound(v string, upper bool) (time.Time, error) {
	if d, err := time.Parse(time.DateOnly, v); err == nil {
		if upper {
			d = d.AddDate(0, 0, 1)
		}
		return d, nil
	}
	t, err := time.Parse(time.RFC3339, v)
	if err != nil {
		return time.Time{}, fmt.Errorf("want an RFC 3339 time or a YYYY-MM-DD date, got %q", v)
	}
	t = t.UTC()
	if upper {
		t = t.Truncate(time.Microsecond).Add(time.Microsecond)
	}
	return t, nil
}

// Window returns the received_at interval [from, before) the audience
// selects; nil for an open side.
func (a Audience) Window() (from, before *time.Time, err error) {
	if a.From != "" {
		t, err := ParseAudienceBound(a.From, false)
		if err != nil {
			return nil, nil, fmt.Errorf("from: %w", err)
		}
		from = &t
	}
	if a.To != "" {
		t, err := ParseAudienceBound(a.To, true)
		if err != nil {
			return nil, nil, fmt.Errorf("to: %w", err)
		}
		before = &t
	}
	if from != nil && before != nil && !before.After(*from) {
		return nil, nil, errors.New("to is before from")
	}
	return from, before, nil
}

// CampaignDefinition is a campaign as the CMS launches it.
type CampaignDefinition struct {
	ID             string
	Name           string
	Course         string
	Template       string
	Audience       Audience
	MetaCampaignID string
	// LaunchedBy is the name of the API token that launched it.
	LaunchedBy string
}

// CampaignCounts counts a campaign's recipients by send status.
type CampaignCounts struct {
	Sent, Failed, Skipped, Pending int
}

// Campaign is a campaign and its progress.
type Campaign struct {
	CampaignDefinition
	Status string
	// AudienceSize is the number of recipients recorded (campaign_sends
	// rows); Batches the number of batches they were cut into.
	AudienceSize int
	Batches      int
	Sends        CampaignCounts
	CreatedAt    time.Time
	LaunchedAt   *time.Time
	PausedAt     *time.Time
	CompletedAt  *time.Time
	UpdatedAt    time.Time
}

func (c Campaign) active() bool { return c.Status == CampaignLaunching || c.Status == CampaignSending }

// CampaignChange is the outcome of a launch or resume: the campaign as it
// now is and, when a campaign:launch task was queued, its outbox row and
// payload for the caller to dispatch at once.
type CampaignChange struct {
	Campaign Campaign
	OutboxID string
	Payload  []byte
}

// LaunchCampaign creates or relaunches a campaign and writes its
// campaign:launch outbox row in the same transaction; payload builds the
// task payload from the campaign id and a new run id.
//
//   - A new campaign, or one that is paused, completed or failed, is
//     (re)defined and set launching with its scan reset: the scan adds
//     matching leads not yet recorded, and a recipient once recorded is
//     never recorded (or sent) again.
//   - A campaign launching or sending with the same definition is left as
//     it is and nothing is queued: a repeated request is idempotent.
//   - One launching or sending with another definition is refused with a
//     *CampaignStateError: pause it first.
func (s *Store) LaunchCampaign(ctx context.Context, d CampaignDefinition, now time.Time, taskType string, payload func(campaignID, run string) ([]byte, error)) (CampaignChange, error) {
	audience, err := json.Marshal(d.Audience)
	if err != nil {
		return CampaignChange{}, fmt.Errorf("launch campaign: %w", err)
	}
	var res CampaignChange
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		res = CampaignChange{}
		tag, err := tx.Exec(ctx, `
			insert into cepjobs.campaigns (id, name, course, template, audience, meta_campaign_id, status,
				launched_by, created_at, launched_at, updated_at)
			values ($1, $2, nullif($3, ''), $4, $5, nullif($6, ''), 'launching', $7, $8, $8, $8)
			on conflict (id) do nothing`,
			d.ID, d.Name, d.Course, d.Template, audience, d.MetaCampaignID, d.LaunchedBy, now)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			c, err := lockCampaign(ctx, tx, d.ID)
			if err != nil {
				return err
			}
			if c.active() {
				if !sameDefinition(c.CampaignDefinition, d) {
					return &CampaignStateError{Action: "relaunch with a different definition", Status: c.Status}
				}
				res.Campaign, err = campaignWithCounts(ctx, tx, d.ID)
				return err
			}
			_, err = tx.Exec(ctx, `
				update cepjobs.campaigns set name = $2, course = nullif($3, ''), template = $4, audience = $5,
					meta_campaign_id = nullif($6, ''), status = 'launching', launch_cursor = null, launched_by = $7,
					launched_at = $8, paused_at = null, completed_at = null, updated_at = $8
				where id = $1`,
				d.ID, d.Name, d.Course, d.Template, audience, d.MetaCampaignID, d.LaunchedBy, now)
			if err != nil {
				return err
			}
		}
		if err := queueLaunch(ctx, tx, d.ID, now, taskType, payload, &res); err != nil {
			return err
		}
		res.Campaign, err = campaignWithCounts(ctx, tx, d.ID)
		return err
	})
	if err != nil {
		return CampaignChange{}, fmt.Errorf("launch campaign: %w", err)
	}
	return res, nil
}

func queueLaunch(ctx context.Context, tx pgx.Tx, id string, now time.Time, taskType string, payload func(string, string) ([]byte, error), res *CampaignChange) error {
	run, err := uuid.NewV7()
	if err != nil {
		return err
	}
	p, err := payload(id, run.String())
	if err != nil {
		return err
	}
	res.OutboxID, err = insertOutbox(ctx, tx, taskType, p, now)
	res.Payload = p
	return err
}

func sameDefinition(a, b CampaignDefinition) bool {
	return a.Name == b.Name && a.Course == b.Course && a.Template == b.Template &&
		a.Audience == b.Audience && a.MetaCampaignID == b.MetaCampaignID
}

// PauseCampaign stops a launching or sending campaign: batches running now
// stop after the message each is sending, queued ones find it paused and
// end. Pausing a paused campaign changes nothing; a completed or failed one
// answers a *CampaignStateError.
func (s *Store) PauseCampaign(ctx context.Context, id string, now time.Time) (Campaign, error) {
	var c Campaign
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		cur, err := lockCampaign(ctx, tx, id)
		if err != nil {
			return err
		}
		switch {
		case cur.active():
			if _, err := tx.Exec(ctx, `update cepjobs.campaigns set status = 'paused', paused_at = $2, updated_at = $2 where id = $1`, id, now); err != nil {
				return err
			}
		case cur.Status != CampaignPaused:
			return &CampaignStateError{Action: "pause", Status: cur.Status}
		}
		c, err = campaignWithCounts(ctx, tx, id)
		return err
	})
	if err != nil {
		return Campaign{}, fmt.Errorf("pause campaign: %w", err)
	}
	return c, nil
}

// ResumeCampaign sets a paused or failed campaign launching again and
// writes a campaign:launch outbox row: the launch goes on with the scan
// where it stopped, then queues every batch that still has pending
// recipients (whatever became of their earlier tasks). A campaign already
// launching or sending is left as it is, with nothing queued; a completed
// one answers a *CampaignStateError.
func (s *Store) ResumeCampaign(ctx context.Context, id string, now time.Time, taskType string, payload func(campaignID, run string) ([]byte, error)) (CampaignChange, error) {
	var res CampaignChange
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		res = CampaignChange{}
		cur, err := lockCampaign(ctx, tx, id)
		if err != nil {
			return err
		}
		switch cur.Status {
		case CampaignPaused, CampaignFailed:
			if _, err := tx.Exec(ctx, `update cepjobs.campaigns set status = 'launching', paused_at = null, updated_at = $2 where id = $1`, id, now); err != nil {
				return err
			}
			if err := queueLaunch(ctx, tx, id, now, taskType, payload, &res); err != nil {
				return err
			}
		case CampaignCompleted:
			return &CampaignStateError{Action: "resume", Status: cur.Status}
		}
		res.Campaign, err = campaignWithCounts(ctx, tx, id)
		return err
	})
	if err != nil {
		return CampaignChange{}, fmt.Errorf("resume campaign: %w", err)
	}
	return res, nil
}

// Campaign returns a campaign with its send counts, or ErrNotFound.
func (s *Store) Campaign(ctx context.Context, id string) (Campaign, error) {
	var c Campaign
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var err error
		c, err = campaignWithCounts(ctx, tx, id)
		return err
	})
	if err != nil {
		return Campaign{}, fmt.Errorf("load campaign: %w", err)
	}
	return c, nil
}

const campaignColumns = `id, name, coalesce(course, ''), template, audience, coalesce(meta_campaign_id, ''), launched_by,
	status, audience_size, batches, created_at, launched_at, paused_at, completed_at, updated_at`

func scanCampaign(row pgx.Row) (Campaign, error) {
	var (
		c   Campaign
		aud []byte
	)
	err := row.Scan(&c.ID, &c.Name, &c.Course, &c.Template, &aud, &c.MetaCampaignID, &c.LaunchedBy,
		&c.Status, &c.AudienceSize, &c.Batches, &c.CreatedAt, &c.LaunchedAt, &c.PausedAt, &c.CompletedAt, &c.UpdatedAt)
	if err != nil {
		return Campaign{}, mapErr(err)
	}
	if err := json.Unmarshal(aud, &c.Audience); err != nil {
		return Campaign{}, fmt.Errorf("%w: %v", ErrBadCampaignAudience, err)
	}
	return c, nil
}

func lockCampaign(ctx context.Context, tx pgx.Tx, id string) (Campaign, error) {
	return scanCampaign(tx.QueryRow(ctx, `select `+campaignColumns+` from cepjobs.campaigns where id = $1 for update`, id))
}

func campaignWithCounts(ctx context.Context, tx pgx.Tx, id string) (Campaign, error) {
	c, err := scanCampaign(tx.QueryRow(ctx, `select `+campaignColumns+` from cepjobs.campaigns where id = $1`, id))
	if err != nil {
		return Campaign{}, err
	}
	c.Sends, err = sendCounts(ctx, tx, id, nil)
	return c, err
}

func sendCounts(ctx context.Context, q querier, id string, batch *int) (CampaignCounts, error) {
	var n CampaignCounts
	err := q.QueryRow(ctx, `
		select count(*) filter (where status = 'sent'), count(*) filter (where status = 'failed'),
			count(*) filter (where status = 'skipped'), count(*) filter (where status = 'pending')
		from cepjobs.campaign_sends where campaign_id = $1 and ($2::int is null or batch = $2)`, id, batch).
		Scan(&n.Sent, &n.Failed, &n.Skipped, &n.Pending)
	return n, err
}

// CampaignBatchCounts counts one batch's recipients by send status.
func (s *Store) CampaignBatchCounts(ctx context.Context, id string, batch int) (CampaignCounts, error) {
	n, err := sendCounts(ctx, s.pool, id, &batch)
	if err != nil {
		return CampaignCounts{}, fmt.Errorf("count campaign batch: %w", err)
	}
	return n, nil
}

// FailCampaign stops a launching or sending campaign on an error a person
// must fix; it returns the campaign's status afterwards.
func (s *Store) FailCampaign(ctx context.Context, id string, now time.Time) (string, error) {
	var status *string
	err := s.pool.QueryRow(ctx, `
		with upd as (
			update cepjobs.campaigns set status = 'failed', updated_at = $2
			where id = $1 and status in ('launching', 'sending')
			returning status
		)
		select coalesce((select status from upd), (select status from cepjobs.campaigns where id = $1))`, id, now).Scan(&status)
	if err != nil {
		return "", fmt.Errorf("fail campaign: %w", err)
	}
	if status == nil {
		return "", fmt.Errorf("fail campaign: %w", ErrNotFound)
	}
	return *status, nil
}

// CampaignPage is what one step of the audience scan did.
type CampaignPage struct {
	// Status is the campaign's; the step did nothing unless it is
	// launching.
	Status string
	// Added is the number of recipients recorded, Batches the batches they
	// were cut into (each new, so each needs its task).
	Added   int
	Batches []int
	// Done: the scan has reached the end of the audience.
	Done bool
}

// LaunchCampaignPage records the next recipients of a launching campaign:
// up to pageSize matching leads, in id order after the keyset cursor, that
// have marketing consent, are not erased, were received before the launch
// and are not recorded yet; cut into batches of batchSize; with the cursor
// moved past them, in one transaction that holds the campaign row, so two
// launch tasks of one campaign never interleave. A crash leaves either the
// whole page with its cursor or neither, and a re-run goes on from the
// cursor.
func (s *Store) LaunchCampaignPage(ctx context.Context, id string, pageSize, batchSize int, now time.Time) (CampaignPage, error) {
	if pageSize < 1 || batchSize < 1 {
		return CampaignPage{}, fmt.Errorf("launch campaign page: page size %d and batch size %d must be positive", pageSize, batchSize)
	}
	var page CampaignPage
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		page = CampaignPage{}
		var (
			aud        []byte
			cursor     *string
			batches    int
			launchedAt *time.Time
		)
		err := tx.QueryRow(ctx, `
			select status, audience, launch_cursor::text, batches, launched_at
			from cepjobs.campaigns where id = $1 for update`, id).Scan(&page.Status, &aud, &cursor, &batches, &launchedAt)
		if err != nil {
			return mapErr(err)
		}
		if page.Status != CampaignLaunching {
			return nil
		}
		if cursor != nil && *cursor == scanDone {
			page.Done = true
			return nil
		}
		var a Audience
		if err := json.Unmarshal(aud, &a); err != nil {
			return fmt.Errorf("%w: %v", ErrBadCampaignAudience, err)
		}
		from, before, err := a.Window()
		if err != nil {
			return fmt.Errorf("%w: %v", ErrBadCampaignAudience, err)
		}
		after := scanStart
		if cursor != nil {
			after = *cursor
		}
		until := now
		if launchedAt != nil {
			until = *launchedAt
		}
		var (
			scanned int
			last    *string
		)
		err = tx.QueryRow(ctx, `
			with page as (
				select l.id from cepjobs.leads l
				where l.id > $2::uuid
					and l.consent_marketing and l.erased_at is null
					and l.received_at <= $3
					and ($4::text = '' or l.course = $4)
					and ($5::text = '' or l.site = $5)
					and ($6::text = '' or l.source = $6)
					and ($7::timestamptz is null or l.received_at >= $7)
					and ($8::timestamptz is null or l.received_at < $8)
					and not exists (select 1 from cepjobs.campaign_sends s where s.campaign_id = $1 and s.lead_id = l.id)
				order by l.id
				limit $9::int
			), ins as (
				insert into cepjobs.campaign_sends (campaign_id, lead_id, batch, created_at)
				select $1, id, $10::int + (row_number() over (order by id) - 1) / $11::int, $12 from page
				on conflict do nothing
				returning batch
			)
			select (select count(*) from page), (select id::text from page order by id desc limit 1),
				(select count(*) from ins), coalesce((select array_agg(distinct batch order by batch) from ins), '{}')`,
			id, after, until, a.Course, a.Campus, a.Source, from, before, pageSize, batches, batchSize, now).
			Scan(&scanned, &last, &page.Added, &page.Batches)
		if err != nil {
			return err
		}
		next := scanDone
		if scanned == pageSize && last != nil {
			next = *last
		} else {
			page.Done = true
		}
		newBatches := batches
		if n := len(page.Batches); n > 0 {
			newBatches = page.Batches[n-1] + 1
		}
		_, err = tx.Exec(ctx, `
			update cepjobs.campaigns set launch_cursor = $2::uuid, batches = $3, audience_size = audience_size + $4, updated_at = $5
			where id = $1`, id, next, newBatches, page.Added, now)
		return err
	})
	if err != nil {
		return CampaignPage{}, fmt.Errorf("launch campaign page: %w", err)
	}
	return page, nil
}

// PendingCampaignBatches lists the batches of a campaign that still have
// pending recipients.
func (s *Store) PendingCampaignBatches(ctx context.Context, id string) ([]int, error) {
	rows, err := s.pool.Query(ctx, `
		select distinct batch from cepjobs.campaign_sends
		where campaign_id = $1 and status = 'pending' order by batch`, id)
	if err != nil {
		return nil, fmt.Errorf("pending campaign batches: %w", err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowTo[int])
	if err != nil {
		return nil, fmt.Errorf("pending campaign batches: %w", err)
	}
	return out, nil
}

// FinishCampaignLaunch ends the launch: a launching campaign becomes
// sending, and a sending one with no pending recipient completed. It
// returns the status afterwards.
func (s *Store) FinishCampaignLaunch(ctx context.Context, id string, now time.Time) (string, error) {
	status, err := s.settleCampaign(ctx, id, now, true)
	if err != nil {
		return "", fmt.Errorf("finish campaign launch: %w", err)
	}
	return status, nil
}

// SettleCampaign completes a sending campaign once no recipient is pending.
// It returns the status afterwards.
func (s *Store) SettleCampaign(ctx context.Context, id string, now time.Time) (string, error) {
	status, err := s.settleCampaign(ctx, id, now, false)
	if err != nil {
		return "", fmt.Errorf("settle campaign: %w", err)
	}
	return status, nil
}

// settleCampaign holds the campaign row while it counts, so the last batch
// and the end of the launch cannot both see the other unfinished and leave
// the campaign sending for ever.
func (s *Store) settleCampaign(ctx context.Context, id string, now time.Time, endLaunch bool) (string, error) {
	var status string
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if err := tx.QueryRow(ctx, `select status from cepjobs.campaigns where id = $1 for update`, id).Scan(&status); err != nil {
			return mapErr(err)
		}
		if endLaunch && status == CampaignLaunching {
			status = CampaignSending
		}
		if status != CampaignSending {
			return nil
		}
		var pending bool
		err := tx.QueryRow(ctx, `select exists (select 1 from cepjobs.campaign_sends where campaign_id = $1 and status = 'pending')`, id).Scan(&pending)
		if err != nil {
			return err
		}
		if !pending {
			status = CampaignCompleted
		}
		_, err = tx.Exec(ctx, `
			update cepjobs.campaigns set status = $2, updated_at = $3,
				completed_at = case when $2 = 'completed' then $3 else completed_at end
			where id = $1 and status <> $2`, id, status, now)
		return err
	})
	return status, err
}

// SkipIneligibleCampaignSends marks skipped the pending recipients of a
// batch who were erased or withdrew marketing consent since the launch,
// except those an attempt started on after staleBefore (in flight: that
// attempt records their outcome).
func (s *Store) SkipIneligibleCampaignSends(ctx context.Context, id string, batch int, staleBefore time.Time) (int, error) {
	tag, err := s.pool.Exec(ctx, `
		update cepjobs.campaign_sends s set status = 'skipped',
			reason = case when l.erased_at is not null then 'erased' else 'no marketing consent' end
		from cepjobs.leads l
		where l.id = s.lead_id and s.campaign_id = $1 and s.batch = $2 and s.status = 'pending'
			and (l.erased_at is not null or not l.consent_marketing)
			and (s.attempt_started_at is null or s.attempt_started_at <= $3)`, id, batch, staleBefore)
	if err != nil {
		return 0, fmt.Errorf("skip ineligible campaign sends: %w", err)
	}
	return int(tag.RowsAffected()), nil
}

// PendingCampaignSends returns the campaign's status and the lead ids of a
// batch's pending recipients, in id order.
func (s *Store) PendingCampaignSends(ctx context.Context, id string, batch int) (string, []string, error) {
	var (
		status string
		leads  []string
	)
	err := s.pool.QueryRow(ctx, `
		select c.status, coalesce(array_agg(s.lead_id::text order by s.lead_id) filter (where s.lead_id is not null), '{}')
		from cepjobs.campaigns c
		left join cepjobs.campaign_sends s on s.campaign_id = c.id and s.batch = $2 and s.status = 'pending'
		where c.id = $1
		group by c.status`, id, batch).Scan(&status, &leads)
	if err != nil {
		return "", nil, fmt.Errorf("pending campaign sends: %w", mapErr(err))
	}
	return status, leads, nil
}

// CampaignRecipient is one recipient as BeginCampaignSend found it,
// personal data included: it never leaves the worker except towards the
// mail vendor.
type CampaignRecipient struct {
	CampaignStatus string
	Template       string
	CampaignCourse string
	// Status is the send's status before the call.
	Status string
	// Claimed: the attempt is recorded and the caller is to send now.
	Claimed  bool
	Attempts int
	// InFlight: pending, but another attempt holds it (one that started
	// after staleBefore).
	InFlight bool
	// Ineligible says why the lead may no longer get it ("erased", "no
	// marketing consent"); empty otherwise.
	Ineligible string
	LeadID     string
	FirstName  string
	LastName   string
	Email      string
	LeadCourse string
}

// BeginCampaignSend records the intent to send to one recipient (attempts
// + 1, attempt_started_at), before the vendor call, and only if the send is
// pending, no other attempt started on it after staleBefore, the lead may
// still get it and the campaign is launching or sending. The claim is one
// UPDATE, so of two tasks working on one batch (a resume while an old task
// still runs, asynq handing a task on after a shutdown) only one sends.
// An attempt started before staleBefore belongs to a worker that died
// between its intent and its record: it may have reached the vendor, and is
// tried again.
func (s *Store) BeginCampaignSend(ctx context.Context, id, leadID string, now, staleBefore time.Time) (CampaignRecipient, error) {
	var (
		r         CampaignRecipient
		consent   bool
		erased    bool
		newCount  *int
		prevCount int
	)
	err := s.pool.QueryRow(ctx, `
		with c as (
			select status, template, coalesce(course, '') as course from cepjobs.campaigns where id = $1
		), claimed as (
			update cepjobs.campaign_sends s set attempts = s.attempts + 1, attempt_started_at = $3
			from cepjobs.leads l, c
			where s.campaign_id = $1 and s.lead_id = $2 and l.id = s.lead_id
				and s.status = 'pending'
				and (s.attempt_started_at is null or s.attempt_started_at <= $4)
				and l.consent_marketing and l.erased_at is null
				and c.status in ('launching', 'sending')
			returning s.attempts
		)
		select c.status, c.template, c.course, s.status, s.attempts, (select attempts from claimed),
			l.id::text, l.first_name, coalesce(l.last_name, ''), l.email, l.course, l.consent_marketing, l.erased_at is not null
		from c, cepjobs.campaign_sends s join cepjobs.leads l on l.id = s.lead_id
		where s.campaign_id = $1 and s.lead_id = $2`, id, leadID, now, staleBefore).Scan(
		&r.CampaignStatus, &r.Template, &r.CampaignCourse, &r.Status, &prevCount, &newCount,
		&r.LeadID, &r.FirstName, &r.LastName, &r.Email, &r.LeadCourse, &consent, &erased)
	if err != nil {
		return CampaignRecipient{}, fmt.Errorf("begin campaign send: %w", mapErr(err))
	}
	r.Attempts = prevCount
	if newCount != nil {
		r.Claimed, r.Attempts = true, *newCount
	}
	switch {
	case erased:
		r.Ineligible = "erased"
	case !consent:
		r.Ineligible = "no marketing consent"
	}
	// Not claimed though pending, allowed and active can only mean another
	// attempt holds it: either its intent is recent, or it committed while
	// this statement waited for the row (the values above predate that).
	r.InFlight = !r.Claimed && r.Status == CampaignSendPending && r.Ineligible == "" &&
		(r.CampaignStatus == CampaignLaunching || r.CampaignStatus == CampaignSending)
	return r, nil
}

// CampaignSendOutcome is the result of one attempt.
type CampaignSendOutcome struct {
	// Status is CampaignSendSent, CampaignSendFailed or CampaignSendSkipped;
	// empty for a transient failure: the send stays pending, its attempt
	// closed, for the retry.
	Status    string
	VendorRef string
	Reason    string
	// Error is recorded as last_error; never personal data.
	Error string
}

// RecordCampaignSend records an attempt's outcome right after the vendor
// answered. Only a pending send changes: a recipient once settled stays so.
func (s *Store) RecordCampaignSend(ctx context.Context, id, leadID string, o CampaignSendOutcome, now time.Time) error {
	_, err := s.pool.Exec(ctx, `
		update cepjobs.campaign_sends set
			status = coalesce(nullif($3, ''), status),
			vendor_ref = coalesce(nullif($4, ''), vendor_ref),
			reason = coalesce(nullif($5, ''), reason),
			last_error = nullif($6, ''),
			sent_at = case when $3 = 'sent' then $7 else sent_at end,
			attempt_started_at = case when $3 = '' then null else attempt_started_at end
		where campaign_id = $1 and lead_id = $2 and status = 'pending'`,
		id, leadID, o.Status, o.VendorRef, o.Reason, truncate(o.Error, 500), now)
	if err != nil {
		return fmt.Errorf("record campaign send: %w", err)
	}
	return nil
}
