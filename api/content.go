package api

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"time"

	"github.com/cepcomunicacion/cepjobs/internal/llm"
	"github.com/cepcomunicacion/cepjobs/store"
	"github.com/cepcomunicacion/cepjobs/tasks"
)

// contentStore is what the content endpoints need.
type contentStore interface {
	CreateContentJob(ctx context.Context, j store.ContentJob, now time.Time, taskType string, payload func(string) ([]byte, error)) (string, string, error)
	ContentJob(ctx context.Context, id string) (store.ContentJob, error)
}

type contentRequest struct {
	Kind        string          `json:"kind"`
	Language    string          `json:"language"`
	Input       json.RawMessage `json:"input"`
	CallbackURL string          `json:"callback_url"`
}

type contentAccepted struct {
	ID     string `json:"id"`
	Status string `json:"status"`
}

func (s *Server) handleCreateContent(cs contentStore) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := readBody(w, r)
		if err != nil {
			s.fail(w, r, err)
			return
		}
		var req contentRequest
		shape, err := decodeJSON(body, &req)
		if err != nil {
			s.fail(w, r, err)
			return
		}
		var errs []FieldError
		for _, fe := range llm.ValidateInput(req.Kind, req.Language, req.Input) {
			errs = append(errs, FieldError{Field: fe.Field, Message: fe.Message})
		}
		if req.CallbackURL != "" {
			if msg := checkCallbackURL(req.CallbackURL); msg != "" {
				errs = append(errs, FieldError{Field: "callback_url", Message: msg})
			}
		}
		if errs = mergeFieldErrors(shape, errs); len(errs) > 0 {
			s.fail(w, r, validationProblem(errs))
			return
		}
		job := store.ContentJob{Kind: req.Kind, Language: req.Language, Input: req.Input, CallbackURL: req.CallbackURL, SubmittedBy: tokenFrom(r.Context()).Name}
		id, outboxID, err := cs.CreateContentJob(r.Context(), job, s.now(), tasks.TypeContentGenerate, contentPayload)
		if err != nil {
			s.fail(w, r, err)
			return
		}
		payload, _ := contentPayload(id)
		s.dispatch.Now(r.Context(), outboxID, tasks.TypeContentGenerate, payload)
		w.Header().Set("Location", "/v1/content/"+id)
		writeJSON(w, http.StatusAccepted, contentAccepted{ID: id, Status: store.ContentQueued})
	})
}

func contentPayload(id string) ([]byte, error) {
	return json.Marshal(tasks.ContentGenerate{JobID: id})
}

// checkCallbackURL accepts absolute http(s) URLs without credentials.
func checkCallbackURL(raw string) string {
	u, err := url.Parse(raw)
	switch {
	case err != nil || u.Host == "":
		return "must be an absolute URL such as https://cms.example.com/api/content-callback"
	case u.Scheme != "https" && u.Scheme != "http":
		return "must be an http or https URL"
	case u.User != nil:
		return "must not carry credentials; the signature header authenticates us"
	case len(raw) > 2000:
		return "must be at most 2000 characters"
	}
	return ""
}

type contentUsage struct {
	PromptTokens     int `json:"prompt_tokens"`
	CompletionTokens int `json:"completion_tokens"`
}

type contentResponse struct {
	ID             string          `json:"id"`
	Kind           string          `json:"kind"`
	Language       string          `json:"language"`
	Status         string          `json:"status"`
	Result         json.RawMessage `json:"result,omitempty"`
	Error          string          `json:"error,omitempty"`
	Model          string          `json:"model,omitempty"`
	PromptVersion  string          `json:"prompt_version,omitempty"`
	Usage          contentUsage    `json:"usage"`
	CostUSD        float64         `json:"cost_usd"`
	Attempts       int             `json:"attempts"`
	CallbackStatus string          `json:"callback_status,omitempty"`
	CreatedAt      time.Time       `json:"created_at"`
	FinishedAt     *time.Time      `json:"finished_at,omitempty"`
}

func (s *Server) handleGetContent(cs contentStore) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		j, err := cs.ContentJob(r.Context(), r.PathValue("id"))
		if errors.Is(err, store.ErrNotFound) {
			s.fail(w, r, problem(http.StatusNotFound, "no content job with this id"))
			return
		}
		if err != nil {
			s.fail(w, r, err)
			return
		}
		writeJSON(w, http.StatusOK, contentResponse{
			ID: j.ID, Kind: j.Kind, Language: j.Language, Status: j.Status, Result: j.Output, Error: j.Error,
			Model: j.Model, PromptVersion: j.PromptVersion,
			Usage:   contentUsage{PromptTokens: j.PromptTokens, CompletionTokens: j.CompletionTokens},
			CostUSD: j.CostUSD, Attempts: j.Attempts, CallbackStatus: j.CallbackStatus,
			CreatedAt: j.CreatedAt.UTC(), FinishedAt: j.FinishedAt,
		})
	})
}
