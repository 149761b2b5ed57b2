package store

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// CampaignTotal marks the per-campaign rows of stats_daily that carry spend
// and cost per lead: spend is known per campaign and day, not per course or
// campus, so it is never split across the detail rows.
const CampaignTotal = "*"

// RollupDay recomputes stats_daily for one UTC day: the day's rows are
// deleted and inserted again in one transaction, so re-running a day gives
// the same rows.
func (s *Store) RollupDay(ctx context.Context, day time.Time, now time.Time) (rows int64, err error) {
	d := day.UTC().Format(time.DateOnly)
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		// One roll-up of a day at a time.
		if _, err := tx.Exec(ctx, `select pg_advisory_xact_lock($1)`, lockKey("rollup", d)); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `delete from cepjobs.stats_daily where day = $1`, d); err != nil {
			return err
		}
		tag, err := tx.Exec(ctx, `
			with l as (
				select id, course, coalesce(site, '') as site, coalesce(campaign, '') as campaign, source, consent_marketing
				from cepjobs.leads
				where received_at >= $1::date and received_at < $1::date + 1
			),
			base as (
				select course, site, campaign, source, count(*) as leads, count(*) filter (where consent_marketing) as optin
				from l group by 1, 2, 3, 4
			),
			ch as (
				select l.course, l.site, l.campaign, l.source, d.channel, d.status, count(*) as n
				from l join cepjobs.lead_deliveries d on d.lead_id = l.id
				group by 1, 2, 3, 4, 5, 6
			),
			agg as (
				select course, site, campaign, source,
					coalesce(jsonb_object_agg(channel, n) filter (where status = 'delivered'), '{}') as delivered,
					coalesce(jsonb_object_agg(channel, n) filter (where status = 'failed'), '{}') as failed,
					coalesce(jsonb_object_agg(channel, n) filter (where status = 'skipped'), '{}') as skipped
				from ch group by 1, 2, 3, 4
			)
			insert into cepjobs.stats_daily (day, course, site, campaign, source, leads, marketing_optin, delivered, failed, skipped, computed_at)
			select $1::date, b.course, b.site, b.campaign, b.source, b.leads, b.optin,
				coalesce(a.delivered, '{}'), coalesce(a.failed, '{}'), coalesce(a.skipped, '{}'), $2
			from base b left join agg a using (course, site, campaign, source)`, d, now)
		if err != nil {
			return err
		}
		rows = tag.RowsAffected()
		// Campaign totals with spend, where Meta spend is known.
		tag, err = tx.Exec(ctx, `
			with spend as (
				select c.id as campaign, sum(m.spend) as spend
				from cepjobs.campaigns c join cepjobs.meta_insights m on m.meta_campaign_id = c.meta_campaign_id and m.day = $1::date
				group by c.id
			),
			leads as (
				select campaign, sum(leads) as leads, sum(marketing_optin) as optin
				from cepjobs.stats_daily where day = $1::date and course <> '*' group by campaign
			)
			insert into cepjobs.stats_daily (day, course, site, campaign, source, leads, marketing_optin, spend, cost_per_lead, computed_at)
			select $1::date, '*', '*', s.campaign, '*', coalesce(l.leads, 0), coalesce(l.optin, 0), s.spend,
				case when coalesce(l.leads, 0) > 0 then s.spend / l.leads end, $2
			from spend s left join leads l using (campaign)`, d, now)
		rows += tag.RowsAffected()
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("roll up %s: %w", d, err)
	}
	return rows, nil
}

// StatsDimensions are the dimensions GET /v1/stats can group by.
var StatsDimensions = []string{"day", "course", "site", "campaign", "source"}

// StatsRow is one group of the stats answer.
type StatsRow struct {
	Group          map[string]string
	Leads          int64
	MarketingOptIn int64
	Delivered      map[string]int64
	Failed         map[string]int64
	Skipped        map[string]int64
	Spend          *float64
	CostPerLead    *float64
}

// Stats answers from the roll-ups for [from, to] (UTC days), grouped by the
// given dimensions (a subset of StatsDimensions; none = one total). Spend
// and cost per lead come with groupings that do not split a campaign by
// course, campus or source.
func (s *Store) Stats(ctx context.Context, from, to time.Time, by []string) ([]StatsRow, error) {
	cols := make([]string, 0, len(by))
	spendable := true
	for _, b := range by {
		switch b {
		case "day":
			cols = append(cols, "to_char(day, 'YYYY-MM-DD')")
		case "campaign":
			cols = append(cols, b)
		case "course", "site", "source":
			cols = append(cols, b)
			spendable = false
		default:
			return nil, fmt.Errorf("stats: unknown dimension %q", b)
		}
	}
	sel, group := "", ""
	if len(cols) > 0 {
		sel = strings.Join(cols, ", ") + ", "
		group = "group by " + strings.Join(cols, ", ") + " order by " + strings.Join(cols, ", ")
	}
	args := []any{from.UTC().Format(time.DateOnly), to.UTC().Format(time.DateOnly)}

	spend := map[string]float64{}
	if spendable {
		rows, err := s.pool.Query(ctx, fmt.Sprintf(`
			select %s sum(spend)::float8 from cepjobs.stats_daily
			where day between $1 and $2 and course = '*' and spend is not null %s`, sel, group), args...)
		if err != nil {
			return nil, fmt.Errorf("stats: %w", err)
		}
		for rows.Next() {
			key, vals := scanKey(len(by))
			var v float64
			if err := rows.Scan(append(vals, &v)...); err != nil {
				rows.Close()
				return nil, fmt.Errorf("stats: %w", err)
			}
			spend[key()] = v
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, fmt.Errorf("stats: %w", err)
		}
	}

	rows, err := s.pool.Query(ctx, fmt.Sprintf(`
		select %s sum(leads)::bigint, sum(marketing_optin)::bigint,
			jsonb_agg(delivered), jsonb_agg(failed), jsonb_agg(skipped)
		from cepjobs.stats_daily where day between $1 and $2 and course <> '*' %s`, sel, group), args...)
	if err != nil {
		return nil, fmt.Errorf("stats: %w", err)
	}
	defer rows.Close()
	var out []StatsRow
	seen := map[string]bool{}
	for rows.Next() {
		key, vals := scanKey(len(by))
		var (
			r            StatsRow
			dl, fl, sk   []byte
			leads, optin *int64
		)
		if err := rows.Scan(append(vals, &leads, &optin, &dl, &fl, &sk)...); err != nil {
			return nil, fmt.Errorf("stats: %w", err)
		}
		if leads == nil {
			continue // the range holds no rows
		}
		r.Group = map[string]string{}
		for i, b := range by {
			r.Group[b] = *(vals[i].(*string))
		}
		r.Leads, r.MarketingOptIn = *leads, *optin
		r.Delivered, r.Failed, r.Skipped = sumMaps(dl), sumMaps(fl), sumMaps(sk)
		if v, ok := spend[key()]; ok {
			r.Spend = &v
			if r.Leads > 0 {
				c := v / float64(r.Leads)
				r.CostPerLead = &c
			}
		}
		seen[key()] = true
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("stats: %w", err)
	}
	// Groups that spent money but got no lead: spend with no cost per lead.
	for k, v := range spend {
		if seen[k] {
			continue
		}
		r := StatsRow{Group: map[string]string{}, Delivered: map[string]int64{}, Failed: map[string]int64{}, Skipped: map[string]int64{}}
		for i, part := range strings.Split(k, "\x00") {
			if i < len(by) {
				r.Group[by[i]] = part
			}
		}
		r.Spend = &v
		out = append(out, r)
	}
	return out, nil
}

// scanKey returns n string scan targets and a function joining them.
func scanKey(n int) (func() string, []any) {
	strs := make([]string, n)
	vals := make([]any, n)
	for i := range strs {
		vals[i] = &strs[i]
	}
	return func() string { return strings.Join(strs, "\x00") }, vals
}

func sumMaps(raw []byte) map[string]int64 {
	var list []map[string]int64
	_ = json.Unmarshal(raw, &list)
	out := map[string]int64{}
	for _, m := range list {
		for k, v := range m {
			out[k] += v
		}
	}
	return out
}
