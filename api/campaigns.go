package api

import "net/http"

// mountCampaigns mounts the campaigns routes (placeholder until they are written).
func (s *Server) mountCampaigns(mux *http.ServeMux, d Deps) {}
