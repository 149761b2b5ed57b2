package api

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"time"

	"github.com/cepcomunicacion/cepjobs/store"
	"github.com/cepcomunicacion/cepjobs/tasks"
)

// exportStore is what the exports endpoints need of the database.
type exportStore interface {
	CreateExport(ctx context.Context, e store.NewExport, now time.Time, taskType string, payload func(string) ([]byte, error)) (string, string, error)
	Export(ctx context.Context, id string) (store.Export, error)
	RenewExportURL(ctx context.Context, id string, cutoff, now time.Time, taskType string, payload func(string) ([]byte, error)) (string, error)
}

// linkMargin: a link with less than this left is not handed out; a new one
// is asked for instead.
const linkMargin = time.Minute

// mountExports mounts POST /v1/exports and GET /v1/exports/{id}, both under
// exports:write (an export is as sensitive to read as to ask for: it holds
// every selected lead's personal data).
//
// Exports are written to the object storage backups use, so without it
// (Deps.Backups is nil exactly when S3_ENDPOINT is unset) POST answers 503
// and says what to set; GET still shows exports made before.
func (s *Server) mountExports(mux *http.ServeMux, d Deps) {
	es, ok := d.Store.(exportStore)
	if !ok {
		s.log.Error("exports not mounted: the store cannot hold exports")
		off := exportsOff("exports are not available on this server")
		s.handle(mux, "POST /v1/exports", s.authorize(ScopeExportsWrite, off))
		s.handle(mux, "GET /v1/exports/{id}", s.authorize(ScopeExportsWrite, off))
		return
	}
	if d.Backups == nil {
		s.handle(mux, "POST /v1/exports", s.authorize(ScopeExportsWrite,
			exportsOff("exports are not configured: set S3_ENDPOINT, S3_ACCESS_KEY and S3_SECRET_KEY (exports go to the object storage backups use)")))
	} else {
		s.handle(mux, "POST /v1/exports", s.authorize(ScopeExportsWrite, s.handleCreateExport(es)))
	}
	s.handle(mux, "GET /v1/exports/{id}", s.authorize(ScopeExportsWrite, s.handleGetExport(es)))
}

func exportsOff(detail string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeProblem(w, r, problem(http.StatusServiceUnavailable, detail))
	})
}

// exportRequest is the body of POST /v1/exports: the filters. Every one is
// optional; {} exports every lead that has not been erased.
type exportRequest struct {
	Course   string `json:"course"`
	Campus   string `json:"campus"`
	Source   string `json:"source"`
	Campaign string `json:"campaign"`
	// From and To bound received_at: a date (YYYY-MM-DD, a UTC day) or an
	// RFC 3339 time. From is inclusive; To is exclusive as a time and
	// includes the whole day as a date.
	From string `json:"from"`
	To   string `json:"to"`
	// MarketingConsent true or false selects leads with or without
	// marketing consent; null or absent selects both.
	MarketingConsent *bool `json:"marketing_consent"`
}

const boundHint = "must be a date such as 2026-11-01 or an RFC 3339 time such as 2026-11-01T09:00:00+01:00"

func (req *exportRequest) validate() (store.ExportFilter, []FieldError) {
	var c checker
	c.slug("course", req.Course, false)
	c.slug("campus", req.Campus, false)
	c.slug("source", req.Source, false)
	c.slug("campaign", req.Campaign, false)
	// The filters are kept as JSON, which holds years 0000-9999 only.
	inRange := func(t *time.Time) bool { return t == nil || (t.Year() >= 1 && t.Year() <= 9999) }
	from, ok1 := parseBound(req.From, false)
	if !ok1 || !inRange(from) {
		c.add("from", boundHint)
	}
	to, ok2 := parseBound(req.To, true)
	if !ok2 || !inRange(to) {
		c.add("to", boundHint)
	}
	if from != nil && to != nil && !to.After(*from) {
		c.add("to", "must be after from")
	}
	if len(c.errs) > 0 {
		return store.ExportFilter{}, c.errs
	}
	return store.ExportFilter{
		Course: req.Course, Campus: req.Campus, Source: req.Source, Campaign: req.Campaign,
		From: from, To: to, MarketingConsent: req.MarketingConsent,
	}, nil
}

// parseBound reads a from/to bound. A date as an upper bound stands for the
// end of that day, so "to": "2026-11-30" includes the 30th.
func parseBound(v string, upper bool) (*time.Time, bool) {
	if v == "" {
		return nil, true
	}
	if d, err := time.Parse(time.DateOnly, v); err == nil {
		if upper {
			d = d.AddDate(0, 0, 1)
		}
		return &d, true
	}
	t, err := time.Parse(time.RFC3339, v)
	if err != nil {
		return nil, false
	}
	t = t.UTC()
	return &t, true
}

type exportAccepted struct {
	ID     string `json:"id"`
	Status string `json:"status"`
}

func (s *Server) handleCreateExport(es exportStore) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := readBody(w, r)
		if err != nil {
			s.fail(w, r, err)
			return
		}
		var req exportRequest
		shape, err := decodeJSON(body, &req)
		if err != nil {
			s.fail(w, r, err)
			return
		}
		f, errs := req.validate()
		if errs = mergeFieldErrors(shape, errs); len(errs) > 0 {
			s.fail(w, r, validationProblem(errs))
			return
		}
		e := store.NewExport{Kind: store.ExportKindLeads, Filters: f, RequestedBy: tokenFrom(r.Context()).Name}
		id, outboxID, err := es.CreateExport(r.Context(), e, s.now(), tasks.TypeExportLeads, exportPayload)
		if err != nil {
			s.fail(w, r, err)
			return
		}
		payload, _ := exportPayload(id)
		s.dispatch.Now(r.Context(), outboxID, tasks.TypeExportLeads, payload)
		w.Header().Set("Location", "/v1/exports/"+id)
		writeJSON(w, http.StatusAccepted, exportAccepted{ID: id, Status: store.ExportQueued})
	})
}

func exportPayload(id string) ([]byte, error) {
	return json.Marshal(tasks.ExportLeads{ExportID: id})
}

type exportFilters struct {
	Course           string     `json:"course,omitempty"`
	Campus           string     `json:"campus,omitempty"`
	Source           string     `json:"source,omitempty"`
	Campaign         string     `json:"campaign,omitempty"`
	From             *time.Time `json:"from,omitempty"`
	To               *time.Time `json:"to,omitempty"` // exclusive
	MarketingConsent *bool      `json:"marketing_consent,omitempty"`
}

// Link states of a completed export.
const (
	linkReady    = "ready"
	linkRenewing = "renewing"
)

type exportResponse struct {
	ID      string        `json:"id"`
	Kind    string        `json:"kind"`
	Status  string        `json:"status"`
	Filters exportFilters `json:"filters"`
	Rows    int64         `json:"rows"`
	Bytes   int64         `json:"bytes"`
	// URL downloads the CSV without credentials until URLExpiresAt.
	URL          string     `json:"url,omitempty"`
	URLExpiresAt *time.Time `json:"url_expires_at,omitempty"`
	// URLStatus is set once the export is completed: ready, or renewing
	// while a new link replaces an expired one (ask again shortly).
	URLStatus  string     `json:"url_status,omitempty"`
	Error      string     `json:"error,omitempty"`
	CreatedAt  time.Time  `json:"created_at"`
	FinishedAt *time.Time `json:"finished_at,omitempty"`
}

// handleGetExport shows an export. A completed export's link is presigned
// by worker-stats, which holds the object storage credentials; when it has
// expired (or is about to), this drops it and queues export:leads again,
// which for a completed export only presigns a new link. The answer then
// says url_status "renewing" with a Retry-After.
func (s *Server) handleGetExport(es exportStore) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ex, err := es.Export(r.Context(), r.PathValue("id"))
		if errors.Is(err, store.ErrNotFound) {
			s.fail(w, r, problem(http.StatusNotFound, "no export with this id"))
			return
		}
		if err != nil {
			s.fail(w, r, err)
			return
		}
		f := ex.Filters
		resp := exportResponse{
			ID: ex.ID, Kind: ex.Kind, Status: ex.Status, Rows: ex.Rows, Bytes: ex.Bytes, Error: ex.Error,
			Filters: exportFilters{
				Course: f.Course, Campus: f.Campus, Source: f.Source, Campaign: f.Campaign,
				From: utcPtr(f.From), To: utcPtr(f.To), MarketingConsent: f.MarketingConsent,
			},
			CreatedAt: ex.CreatedAt.UTC(), FinishedAt: utcPtr(ex.FinishedAt),
		}
		if ex.Status == store.ExportCompleted && ex.ObjectKey != "" {
			now := s.now()
			if ex.URL != "" && ex.URLExpiresAt != nil && ex.URLExpiresAt.After(now.Add(linkMargin)) {
				resp.URL, resp.URLExpiresAt, resp.URLStatus = ex.URL, utcPtr(ex.URLExpiresAt), linkReady
			} else {
				outboxID, err := es.RenewExportURL(r.Context(), ex.ID, now.Add(linkMargin), now, tasks.TypeExportLeads, exportPayload)
				if err != nil {
					s.fail(w, r, err)
					return
				}
				if outboxID != "" {
					payload, _ := exportPayload(ex.ID)
					s.dispatch.Now(r.Context(), outboxID, tasks.TypeExportLeads, payload)
				}
				resp.URLStatus = linkRenewing
				w.Header().Set("Retry-After", "2")
			}
		}
		writeJSON(w, http.StatusOK, resp)
	})
}

func utcPtr(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	u := t.UTC()
	return &u
}
