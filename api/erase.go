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

// eraseStore records erasure requests.
type eraseStore interface {
	RequestErasure(ctx context.Context, leadID, by string, now time.Time, taskType string, payload func(string) ([]byte, error)) (string, error)
}

func erasePayload(id string) ([]byte, error) { return json.Marshal(tasks.LeadErase{LeadID: id}) }

// handleEraseLead accepts an RGPD erasure request: 202 while it runs; the
// lead's personal data is then gone from Postgres and Mailchimp.
func (s *Server) handleEraseLead(es eraseStore) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.PathValue("id")
		outboxID, err := es.RequestErasure(r.Context(), id, tokenFrom(r.Context()).Name, s.now(), tasks.TypeLeadErase, erasePayload)
		if errors.Is(err, store.ErrNotFound) {
			s.fail(w, r, problem(http.StatusNotFound, "no lead with this id"))
			return
		}
		if err != nil {
			s.fail(w, r, err)
			return
		}
		if outboxID != "" {
			payload, _ := erasePayload(id)
			s.dispatch.Now(r.Context(), outboxID, tasks.TypeLeadErase, payload)
		}
		writeJSON(w, http.StatusAccepted, map[string]string{"id": id, "status": "erasing"})
	})
}
