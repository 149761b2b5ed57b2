package api

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/cepcomunicacion/cepjobs/store"
)

// statsStore answers GET /v1/stats from the daily roll-ups.
type statsStore interface {
	Stats(ctx context.Context, from, to time.Time, by []string) ([]store.StatsRow, error)
}

// maxStatsRange bounds one query.
const maxStatsRange = 366 * 24 * time.Hour

// mountStats mounts GET /v1/stats.
func (s *Server) mountStats(mux *http.ServeMux, d Deps) {
	st, ok := d.Store.(statsStore)
	if !ok {
		return
	}
	s.handle(mux, "GET /v1/stats", s.authorize(ScopeStatsRead, s.handleStats(st)))
}

type statsItem struct {
	Group          map[string]string `json:"group,omitempty"`
	Leads          int64             `json:"leads"`
	MarketingOptIn int64             `json:"marketing_optin"`
	Delivered      map[string]int64  `json:"delivered"`
	Failed         map[string]int64  `json:"failed"`
	Skipped        map[string]int64  `json:"skipped"`
	Spend          *float64          `json:"spend,omitempty"`
	CostPerLead    *float64          `json:"cost_per_lead,omitempty"`
}

// handleStats answers ?from=YYYY-MM-DD&to=YYYY-MM-DD&by=course,campaign.
func (s *Server) handleStats(st statsStore) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		var c checker
		from, err1 := time.Parse(time.DateOnly, q.Get("from"))
		to, err2 := time.Parse(time.DateOnly, q.Get("to"))
		// Go reads year 0000; PostgreSQL has no year 0 (1 BC comes
		// before AD 1) and refuses the day.
		if err1 != nil || from.Year() < 1 {
			c.add("from", "required: a day as YYYY-MM-DD")
		}
		if err2 != nil || to.Year() < 1 {
			c.add("to", "required: a day as YYYY-MM-DD")
		}
		if err1 == nil && err2 == nil && (to.Before(from) || to.Sub(from) > maxStatsRange) {
			c.add("to", "must be on or after from, at most 366 days later")
		}
		var by []string
		if v := q.Get("by"); v != "" {
			for _, b := range strings.Split(v, ",") {
				b = strings.TrimSpace(b)
				if !slices.Contains(store.StatsDimensions, b) {
					c.add("by", "each must be one of "+strings.Join(store.StatsDimensions, ", "))
					break
				}
				if !slices.Contains(by, b) {
					by = append(by, b)
				}
			}
		}
		if len(c.errs) > 0 {
			s.fail(w, r, validationProblem(c.errs))
			return
		}
		rows, err := st.Stats(r.Context(), from, to, by)
		if err != nil {
			s.fail(w, r, err)
			return
		}
		out := make([]statsItem, 0, len(rows))
		for _, row := range rows {
			out = append(out, statsItem{Group: row.Group, Leads: row.Leads, MarketingOptIn: row.MarketingOptIn,
				Delivered: row.Delivered, Failed: row.Failed, Skipped: row.Skipped, Spend: row.Spend, CostPerLead: row.CostPerLead})
		}
		writeJSON(w, http.StatusOK, map[string]any{"from": q.Get("from"), "to": q.Get("to"), "by": by, "rows": out})
	})
}
