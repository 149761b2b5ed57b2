// Package deploytest checks the deployment files that no compiler sees:
// docker-compose.yml (loaded with compose-go, as docker compose does),
// .env.example, deploy/Dockerfile (parsed: targets, users, build flags) and
// deploy/nginx (nginx -t, then a real nginx in front of a real intake).
//
// It has no code of its own: everything is in its tests. The machine that
// runs them has no Docker engine, so images are never built here; the
// Dockerfile is checked statically.
package deploytest
