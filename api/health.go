package api

import (
	"context"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

func (s *Server) handleHealthz() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
}

// handleReadyz answers 200 only when Redis and Postgres both answer and the
// server is not draining.
func (s *Server) handleReadyz() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		checks := map[string]string{}
		var mu sync.Mutex
		var wg sync.WaitGroup
		for name, p := range map[string]pinger{"redis": s.redis, "postgres": s.store} {
			wg.Go(func() {
				status := "ok"
				if p == nil {
					status = "not configured"
				} else if err := p.Ping(ctx); err != nil {
					status = "unavailable"
				}
				mu.Lock()
				checks[name] = status
				mu.Unlock()
			})
		}
		wg.Wait()
		code, status := http.StatusOK, "ready"
		for _, v := range checks {
			if v != "ok" {
				code, status = http.StatusServiceUnavailable, "not ready"
			}
		}
		if s.draining.Load() {
			code, status = http.StatusServiceUnavailable, "draining"
		}
		writeJSON(w, code, map[string]any{"status": status, "checks": checks})
	})
}

func (s *Server) handleMetrics(reg *prometheus.Registry) http.Handler {
	if reg == nil {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			s.fail(w, r, errNoRegistry)
		})
	}
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg})
}
