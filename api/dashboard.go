package api

import (
	"crypto/sha256"
	"crypto/subtle"
	"net/http"
	"sync"

	"github.com/hibiken/asynqmon"
	"golang.org/x/crypto/bcrypt"
)

// DashboardPath is where asynqmon is mounted.
const DashboardPath = "/monitoring"

// mountDashboard serves asynqmon under /monitoring behind basic auth. With
// no credentials configured it is not mounted at all, and the log says why.
func (s *Server) mountDashboard(mux *http.ServeMux, d Deps) {
	cfg := d.Config.Dashboard
	if !cfg.Enabled() {
		s.log.Warn("dashboard not mounted: set CEPJOBS_DASHBOARD_USER and CEPJOBS_DASHBOARD_PASSWORD_HASH (a bcrypt hash, see cepjobs hash-password) to serve it at " + DashboardPath)
		return
	}
	if d.RedisConnOpt == nil {
		s.log.Warn("dashboard not mounted: no Redis connection")
		return
	}
	mon := asynqmon.New(asynqmon.Options{
		RootPath:     DashboardPath,
		RedisConnOpt: d.RedisConnOpt,
		ReadOnly:     cfg.ReadOnly,
	})
	s.closers = append(s.closers, mon.Close)
	h := s.basicAuth(cfg, mon)
	s.handle(mux, DashboardPath+"/", h)
	s.handle(mux, "GET "+DashboardPath, http.RedirectHandler(DashboardPath+"/", http.StatusMovedPermanently))
	s.log.Info("dashboard mounted", "path", DashboardPath, "read_only", cfg.ReadOnly)
}

// basicAuth guards the dashboard. bcrypt costs tens of milliseconds by
// design, and the UI polls several endpoints every few seconds: a verified
// credential is remembered (as a SHA-256 digest, never in clear) so only the
// first request of a session pays for bcrypt.
func (s *Server) basicAuth(cfg DashboardConfig, next http.Handler) http.Handler {
	var (
		mu       sync.Mutex
		verified = map[[32]byte]bool{}
	)
	userDigest := sha256.Sum256([]byte(cfg.User))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		user, pass, ok := r.BasicAuth()
		if ok {
			u := sha256.Sum256([]byte(user))
			userOK := subtle.ConstantTimeCompare(u[:], userDigest[:]) == 1
			key := sha256.Sum256([]byte(user + "\x00" + pass))
			mu.Lock()
			known := verified[key]
			mu.Unlock()
			if !known && userOK && bcrypt.CompareHashAndPassword([]byte(cfg.PasswordHash), []byte(pass)) == nil {
				mu.Lock()
				if len(verified) > 1000 {
					clear(verified)
				}
				verified[key] = true
				mu.Unlock()
				known = true
			}
			if known && userOK {
				w.Header().Set("X-Frame-Options", "DENY")
				w.Header().Set("X-Content-Type-Options", "nosniff")
				w.Header().Set("Referrer-Policy", "no-referrer")
				next.ServeHTTP(w, r)
				return
			}
		}
		w.Header().Set("WWW-Authenticate", `Basic realm="cepjobs dashboard", charset="UTF-8"`)
		writeProblem(w, r, problem(http.StatusUnauthorized, "dashboard credentials required"))
	})
}
