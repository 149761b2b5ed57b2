package api

import "net/http"

// mountStats mounts the statistics routes (placeholder).
func (s *Server) mountStats(mux *http.ServeMux, d Deps) {}
