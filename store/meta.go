package store

import (
	"context"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// MetaInsight is one Meta Ads campaign's numbers on one day (a day of the ad
// account's time zone, as Meta reports it).
type MetaInsight struct {
	MetaCampaignID string
	Day            time.Time // the date; its clock and zone are ignored
	CampaignName   string
	// Spend is a decimal amount as Meta sends it ("12.34"), so no float
	// rounding creeps in; stored with 4 decimals, read back without
	// trailing zeros ("20" for "20.00").
	Spend       string
	Currency    string
	Impressions int64
	Clicks      int64
	Leads       int64
	// UpdatedAt is when the row last changed; ignored by UpsertMetaInsights.
	UpdatedAt time.Time
}

// UpsertMetaInsights writes rows in one transaction: a new campaign and day
// is inserted, a known one takes the new values (Meta restates recent days).
// A row whose values did not change is left alone, updated_at included, so
// reading the same numbers again writes nothing. It returns how many rows
// were inserted or changed.
func (s *Store) UpsertMetaInsights(ctx context.Context, rows []MetaInsight, now time.Time) (int64, error) {
	var changed int64
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		changed = 0
		for _, r := range rows {
			tag, err := tx.Exec(ctx, `
				insert into cepjobs.meta_insights as m
					(meta_campaign_id, day, campaign_name, spend, currency, impressions, clicks, leads, updated_at)
				values ($1, $2::date, nullif($3, ''), $4::numeric, nullif($5, ''), $6, $7, $8, $9)
				on conflict (meta_campaign_id, day) do update set
					campaign_name = excluded.campaign_name, spend = excluded.spend, currency = excluded.currency,
					impressions = excluded.impressions, clicks = excluded.clicks, leads = excluded.leads,
					updated_at = excluded.updated_at
				where (m.campaign_name, m.spend, m.currency, m.impressions, m.clicks, m.leads)
					is distinct from (excluded.campaign_name, excluded.spend, excluded.currency, excluded.impressions, excluded.clicks, excluded.leads)`,
				r.MetaCampaignID, r.Day.Format(time.DateOnly), r.CampaignName, spendOrZero(r.Spend), r.Currency,
				r.Impressions, r.Clicks, r.Leads, now)
			if err != nil {
				return err
			}
			changed += tag.RowsAffected()
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("upsert meta insights: %w", err)
	}
	return changed, nil
}

func spendOrZero(s string) string {
	if s == "" {
		return "0"
	}
	return s
}

// MetaInsights lists the rows of days from..to (inclusive), by day then
// campaign.
func (s *Store) MetaInsights(ctx context.Context, from, to time.Time) ([]MetaInsight, error) {
	rows, err := s.pool.Query(ctx, `
		select meta_campaign_id, day, coalesce(campaign_name, ''), trim_scale(spend)::text, coalesce(currency, ''),
			impressions, clicks, leads, updated_at
		from cepjobs.meta_insights
		where day between $1::date and $2::date
		order by day, meta_campaign_id`, from.Format(time.DateOnly), to.Format(time.DateOnly))
	if err != nil {
		return nil, fmt.Errorf("list meta insights: %w", err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowToStructByPos[MetaInsight])
	if err != nil {
		return nil, fmt.Errorf("list meta insights: %w", err)
	}
	return out, nil
}

// CampaignForMetaCampaign returns the id of our campaign tied to a Meta Ads
// campaign (campaigns.meta_campaign_id), so a lead from a Meta lead form
// counts towards that campaign's cost per lead; ErrNotFound when none is.
// Should several be tied to it, the oldest wins.
func (s *Store) CampaignForMetaCampaign(ctx context.Context, metaCampaignID string) (string, error) {
	var id string
	err := s.pool.QueryRow(ctx, `
		select id from cepjobs.campaigns where meta_campaign_id = $1
		order by created_at, id limit 1`, metaCampaignID).Scan(&id)
	if err != nil {
		return "", fmt.Errorf("campaign for meta campaign: %w", mapErr(err))
	}
	return id, nil
}

// QueuedTask is one task for QueueTasks.
type QueuedTask struct {
	TaskType string
	Payload  []byte
	// Key, when set, names the task: the row id (and so the TaskID) is
	// derived from type and key, and a task whose key is still in the
	// outbox is not added again (dispatched rows are kept until the
	// maintenance purge). Empty: a fresh id, always added.
	Key string
}

// outboxKeySpace is the UUID namespace keyed outbox ids are derived in
// (UUIDv5), fixed forever: changing it would let a redelivered key in again.
var outboxKeySpace = uuid.MustParse("4f0e9b8e-6c1d-5a7e-9c39-2b8f1d3e7a60")

// OutboxKeyID is the row id (and TaskID) QueueTasks gives a task of this
// type and key.
func OutboxKeyID(taskType, key string) string {
	return uuid.NewSHA1(outboxKeySpace, []byte(taskType+"\x00"+key)).String()
}

// QueueTasks writes several outbox rows in one transaction: all of them or
// none. ids[i] is the row id (and TaskID) of ts[i], for the caller to
// dispatch at once, or "" when ts[i]'s key was queued before (by an earlier
// call, or earlier in ts): that task is already on its way.
func (s *Store) QueueTasks(ctx context.Context, ts []QueuedTask, now time.Time) ([]string, error) {
	ids := make([]string, len(ts))
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		for i, t := range ts {
			ids[i] = ""
			if t.Key == "" {
				id, err := insertOutbox(ctx, tx, t.TaskType, t.Payload, now)
				if err != nil {
					return err
				}
				ids[i] = id
				continue
			}
			id := OutboxKeyID(t.TaskType, t.Key)
			tag, err := tx.Exec(ctx, `
				insert into cepjobs.outbox (id, task_type, payload, created_at, available_at)
				values ($1, $2, $3, $4, $5)
				on conflict (id) do nothing`, id, t.TaskType, t.Payload, now, now.Add(InlineGrace))
			if err != nil {
				return err
			}
			if tag.RowsAffected() == 1 {
				ids[i] = id
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("queue tasks: %w", err)
	}
	return ids, nil
}
