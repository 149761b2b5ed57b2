package api

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"regexp"
	"time"

	"github.com/cepcomunicacion/cepjobs/store"
	"github.com/cepcomunicacion/cepjobs/tasks"
)

// campaignStore is what the campaign endpoints need.
type campaignStore interface {
	LaunchCampaign(ctx context.Context, d store.CampaignDefinition, now time.Time, taskType string, payload func(campaignID, run string) ([]byte, error)) (store.CampaignChange, error)
	PauseCampaign(ctx context.Context, id string, now time.Time) (store.Campaign, error)
	ResumeCampaign(ctx context.Context, id string, now time.Time, taskType string, payload func(campaignID, run string) ([]byte, error)) (store.CampaignChange, error)
	Campaign(ctx context.Context, id string) (store.Campaign, error)
}

// campaignMail is implemented by a Deps.Store that knows whether campaign
// email can go out at all: CampaignMailOff returns why not, or "".
type campaignMail interface {
	CampaignMailOff() string
}

// campaignMailOff is why launching and resuming answer 503, or "":
// Deps.CampaignMailOff (set by the intake when Mandrill is not configured),
// or a store that says so (tests).
func campaignMailOff(d Deps) string {
	if d.CampaignMailOff != "" {
		return d.CampaignMailOff
	}
	if m, ok := d.Store.(campaignMail); ok {
		return m.CampaignMailOff()
	}
	return ""
}

// mountCampaigns mounts the campaign routes.
func (s *Server) mountCampaigns(mux *http.ServeMux, d Deps) {
	cs, ok := d.Store.(campaignStore)
	if !ok {
		off := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			writeProblem(w, r, problem(http.StatusServiceUnavailable, "campaigns are not available in this process"))
		})
		for _, p := range []string{"POST /v1/campaigns/{id}/launch", "POST /v1/campaigns/{id}/pause", "POST /v1/campaigns/{id}/resume"} {
			s.handle(mux, p, s.authorize(ScopeCampaignsWrite, off))
		}
		s.handle(mux, "GET /v1/campaigns/{id}", s.authorize(ScopeCampaignsRead, off))
		return
	}
	mailOff := campaignMailOff(d)
	s.handle(mux, "POST /v1/campaigns/{id}/launch", s.authorize(ScopeCampaignsWrite, s.handleLaunchCampaign(cs, mailOff)))
	s.handle(mux, "GET /v1/campaigns/{id}", s.authorize(ScopeCampaignsRead, s.handleGetCampaign(cs)))
	s.handle(mux, "POST /v1/campaigns/{id}/pause", s.authorize(ScopeCampaignsWrite, s.handlePauseCampaign(cs)))
	s.handle(mux, "POST /v1/campaigns/{id}/resume", s.authorize(ScopeCampaignsWrite, s.handleResumeCampaign(cs, mailOff)))
}

// campaignRequest is the body of POST /v1/campaigns/{id}/launch: the
// campaign's definition as the CMS holds it.
type campaignRequest struct {
	Name           string                   `json:"name"`
	Course         string                   `json:"course"`
	Template       string                   `json:"template"`
	Audience       *campaignAudienceRequest `json:"audience"`
	MetaCampaignID string                   `json:"meta_campaign_id"`
}

type campaignAudienceRequest struct {
	Course string `json:"course"`
	Campus string `json:"campus"`
	Source string `json:"source"`
	From   string `json:"from"`
	To     string `json:"to"`
}

var metaCampaignIDRE = regexp.MustCompile(`^[0-9]{1,32}$`)

// validate checks every field and returns the definition to store.
func (req *campaignRequest) validate(id string) (store.CampaignDefinition, []FieldError) {
	var c checker
	if !tasks.ValidCampaignID(id) {
		c.add("id", "the campaign id in the path must be 1-41 letters, digits, '.', '_' or '-'")
	}
	c.text("name", req.Name, true, 200, false)
	c.slug("course", req.Course, false)
	c.slug("template", req.Template, true)
	if req.MetaCampaignID != "" && !metaCampaignIDRE.MatchString(req.MetaCampaignID) {
		c.add("meta_campaign_id", "must be a Meta Ads campaign id: digits only")
	}
	var aud store.Audience
	if a := req.Audience; a == nil {
		c.add("audience", "required: the leads to send to ({} for every lead with marketing consent)")
	} else {
		c.slug("audience.course", a.Course, false)
		c.slug("audience.campus", a.Campus, false)
		c.slug("audience.source", a.Source, false)
		var from, before time.Time
		var err error
		if a.From != "" {
			if from, err = store.ParseAudienceBound(a.From, false); err != nil {
				c.add("audience.from", "must be an RFC 3339 time such as 2026-11-01T00:00:00Z or a date such as 2026-11-01")
			}
		}
		if a.To != "" {
			if before, err = store.ParseAudienceBound(a.To, true); err != nil {
				c.add("audience.to", "must be an RFC 3339 time such as 2026-11-30T23:59:59Z or a date such as 2026-11-30 (the whole day)")
			}
		}
		if !from.IsZero() && !before.IsZero() && !before.After(from) {
			c.add("audience.to", "must not be before audience.from")
		}
		aud = store.Audience{Course: a.Course, Campus: a.Campus, Source: a.Source, From: a.From, To: a.To}
	}
	if len(c.errs) > 0 {
		return store.CampaignDefinition{}, c.errs
	}
	return store.CampaignDefinition{ID: id, Name: req.Name, Course: req.Course, Template: req.Template,
		Audience: aud, MetaCampaignID: req.MetaCampaignID}, nil
}

// campaignResponse is a campaign and its progress; the counts come from
// the recipients' records. No personal data.
type campaignResponse struct {
	ID             string           `json:"id"`
	Name           string           `json:"name"`
	Course         string           `json:"course,omitempty"`
	Template       string           `json:"template"`
	Audience       campaignAudience `json:"audience"`
	MetaCampaignID string           `json:"meta_campaign_id,omitempty"`
	Status         string           `json:"status"`
	AudienceSize   int              `json:"audience_size"`
	Batches        int              `json:"batches"`
	Sent           int              `json:"sent"`
	Failed         int              `json:"failed"`
	Skipped        int              `json:"skipped"`
	Pending        int              `json:"pending"`
	LaunchedBy     string           `json:"launched_by"`
	CreatedAt      time.Time        `json:"created_at"`
	LaunchedAt     *time.Time       `json:"launched_at,omitempty"`
	PausedAt       *time.Time       `json:"paused_at,omitempty"`
	CompletedAt    *time.Time       `json:"completed_at,omitempty"`
	UpdatedAt      time.Time        `json:"updated_at"`
}

type campaignAudience struct {
	Course string `json:"course,omitempty"`
	Campus string `json:"campus,omitempty"`
	Source string `json:"source,omitempty"`
	From   string `json:"from,omitempty"`
	To     string `json:"to,omitempty"`
}

func campaignView(c store.Campaign) campaignResponse {
	utc := func(t *time.Time) *time.Time {
		if t == nil {
			return nil
		}
		u := t.UTC()
		return &u
	}
	a := c.Audience
	return campaignResponse{
		ID: c.ID, Name: c.Name, Course: c.Course, Template: c.Template, MetaCampaignID: c.MetaCampaignID,
		Audience: campaignAudience{Course: a.Course, Campus: a.Campus, Source: a.Source, From: a.From, To: a.To},
		Status:   c.Status, AudienceSize: c.AudienceSize, Batches: c.Batches,
		Sent: c.Sends.Sent, Failed: c.Sends.Failed, Skipped: c.Sends.Skipped, Pending: c.Sends.Pending,
		LaunchedBy: c.LaunchedBy, CreatedAt: c.CreatedAt.UTC(), LaunchedAt: utc(c.LaunchedAt),
		PausedAt: utc(c.PausedAt), CompletedAt: utc(c.CompletedAt), UpdatedAt: c.UpdatedAt.UTC(),
	}
}

func campaignLaunchPayload(id, run string) ([]byte, error) {
	p := tasks.CampaignLaunch{CampaignID: id, Run: run}
	if err := p.Validate(); err != nil {
		return nil, err
	}
	return json.Marshal(p)
}

func mailOffProblem(reason string) *Problem {
	p := problem(http.StatusServiceUnavailable, reason+"; nothing was queued")
	p.Type = "https://cepjobs.dev/problems/campaigns-off"
	return p
}

// campaignProblem maps the store's campaign errors; others go to fail.
func (s *Server) campaignProblem(w http.ResponseWriter, r *http.Request, err error) {
	var se *store.CampaignStateError
	switch {
	case errors.As(err, &se):
		p := problem(http.StatusConflict, se.Error())
		p.Type = "https://cepjobs.dev/problems/campaign-state"
		writeProblem(w, r, p)
	case errors.Is(err, store.ErrNotFound):
		writeProblem(w, r, problem(http.StatusNotFound, "no campaign with this id"))
	default:
		s.fail(w, r, err)
	}
}

// handleLaunchCampaign creates or relaunches a campaign (see
// store.LaunchCampaign for what a relaunch does) and queues its
// campaign:launch task. 202 with the campaign; 409 when it is sending
// with another definition.
func (s *Server) handleLaunchCampaign(cs campaignStore, mailOff string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := readBody(w, r)
		if err != nil {
			s.fail(w, r, err)
			return
		}
		var req campaignRequest
		shape, err := decodeJSON(body, &req)
		if err != nil {
			s.fail(w, r, err)
			return
		}
		def, errs := req.validate(r.PathValue("id"))
		if errs = mergeFieldErrors(shape, errs); len(errs) > 0 {
			s.fail(w, r, validationProblem(errs))
			return
		}
		if mailOff != "" {
			writeProblem(w, r, mailOffProblem(mailOff))
			return
		}
		def.LaunchedBy = tokenFrom(r.Context()).Name
		res, err := cs.LaunchCampaign(r.Context(), def, s.now(), tasks.TypeCampaignLaunch, campaignLaunchPayload)
		if err != nil {
			s.campaignProblem(w, r, err)
			return
		}
		if res.OutboxID != "" {
			s.dispatch.Now(r.Context(), res.OutboxID, tasks.TypeCampaignLaunch, res.Payload)
		}
		w.Header().Set("Location", "/v1/campaigns/"+def.ID)
		writeJSON(w, http.StatusAccepted, campaignView(res.Campaign))
	})
}

func (s *Server) handleGetCampaign(cs campaignStore) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.PathValue("id")
		if !tasks.ValidCampaignID(id) {
			s.campaignProblem(w, r, store.ErrNotFound)
			return
		}
		c, err := cs.Campaign(r.Context(), id)
		if err != nil {
			s.campaignProblem(w, r, err)
			return
		}
		writeJSON(w, http.StatusOK, campaignView(c))
	})
}

// handlePauseCampaign: 200 with the paused campaign (also when it already
// was); 409 when it is completed or failed.
func (s *Server) handlePauseCampaign(cs campaignStore) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.PathValue("id")
		if !tasks.ValidCampaignID(id) {
			s.campaignProblem(w, r, store.ErrNotFound)
			return
		}
		c, err := cs.PauseCampaign(r.Context(), id, s.now())
		if err != nil {
			s.campaignProblem(w, r, err)
			return
		}
		writeJSON(w, http.StatusOK, campaignView(c))
	})
}

// handleResumeCampaign: 202 when a paused or failed campaign was set
// launching again with a task queued; 200 when it was already launching or
// sending; 409 when it is completed.
func (s *Server) handleResumeCampaign(cs campaignStore, mailOff string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.PathValue("id")
		if !tasks.ValidCampaignID(id) {
			s.campaignProblem(w, r, store.ErrNotFound)
			return
		}
		if mailOff != "" {
			writeProblem(w, r, mailOffProblem(mailOff))
			return
		}
		res, err := cs.ResumeCampaign(r.Context(), id, s.now(), tasks.TypeCampaignLaunch, campaignLaunchPayload)
		if err != nil {
			s.campaignProblem(w, r, err)
			return
		}
		status := http.StatusOK
		if res.OutboxID != "" {
			s.dispatch.Now(r.Context(), res.OutboxID, tasks.TypeCampaignLaunch, res.Payload)
			status = http.StatusAccepted
		}
		writeJSON(w, status, campaignView(res.Campaign))
	})
}
