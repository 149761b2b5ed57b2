package api

import "net/http"

// mountWebhooks mounts the webhooks routes (placeholder until they are written).
func (s *Server) mountWebhooks(mux *http.ServeMux, d Deps) {}
