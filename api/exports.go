package api

import "net/http"

// mountExports mounts the exports routes (placeholder until they are written).
func (s *Server) mountExports(mux *http.ServeMux, d Deps) {}
