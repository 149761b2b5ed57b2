package api

import (
	"net/http"
	"strings"
)

// routes lists every route the intake serves.
func (s *Server) routes(mux *http.ServeMux, d Deps) {
	// Leads.
	s.handle(mux, "POST /v1/leads", s.authorize(ScopeLeadsWrite, s.handleCreateLead()))
	s.handle(mux, "GET /v1/leads/{id}", s.authorize(ScopeLeadsRead, s.handleGetLead()))
	if es, ok := d.Store.(eraseStore); ok {
		s.handle(mux, "DELETE /v1/leads/{id}", s.authorize(ScopeLeadsErase, s.handleEraseLead(es)))
	}

	// AI content.
	s.handle(mux, "POST /v1/content", s.authorize(ScopeContentWrite, s.handleCreateContent(d.Store)))
	s.handle(mux, "GET /v1/content/{id}", s.authorize(ScopeContentRead, s.handleGetContent(d.Store)))

	// Campaigns, Meta webhooks, exports and statistics.
	s.mountCampaigns(mux, d)
	s.mountWebhooks(mux, d)
	s.mountExports(mux, d)
	s.mountStats(mux, d)

	// Backups.
	if d.Backups != nil {
		s.handle(mux, "POST /v1/backups", s.authorize(ScopeBackupsWrite, s.handleCreateBackup(d.Store)))
		s.handle(mux, "GET /v1/backups", s.authorize(ScopeBackupsRead, s.handleListBackups(d.Backups, d.BackupDatabase)))
	} else {
		s.handle(mux, "POST /v1/backups", s.authorize(ScopeBackupsWrite, backupsOff()))
		s.handle(mux, "GET /v1/backups", s.authorize(ScopeBackupsRead, backupsOff()))
	}

	// Operations.
	s.handle(mux, "GET /healthz", s.handleHealthz())
	s.handle(mux, "GET /readyz", s.handleReadyz())
	s.handle(mux, "GET /metrics", s.handleMetrics(d.Registry))

	// Dashboard (asynqmon), when credentials are configured.
	s.mountDashboard(mux, d)

}

// handle registers h under pattern, instrumented with the pattern as the
// route label.
func (s *Server) handle(mux *http.ServeMux, pattern string, h http.Handler) {
	mux.Handle(pattern, s.instrument(pattern, h))
}

// notFound answers unknown routes with problem+json: 405 with Allow when the
// path exists under other methods, 404 otherwise.
func notFound(mux *http.ServeMux) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, pattern := mux.Handler(r); pattern != "" {
			mux.ServeHTTP(w, r)
			return
		}
		var allow []string
		for _, m := range []string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete} {
			probe := r.Clone(r.Context())
			probe.Method = m
			if _, pattern := mux.Handler(probe); pattern != "" {
				allow = append(allow, m)
			}
		}
		if len(allow) > 0 {
			p := problem(http.StatusMethodNotAllowed, "this endpoint does not accept "+r.Method)
			p.header = http.Header{"Allow": {strings.Join(allow, ", ")}}
			writeProblem(w, r, p)
			return
		}
		writeProblem(w, r, problem(http.StatusNotFound, "no such endpoint"))
	})
}
