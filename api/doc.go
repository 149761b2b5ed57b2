// Package api is the intake HTTP API: routes, middleware (auth, body limit,
// rate limit, request id, recovery, metrics), decoding and validation,
// RFC 9457 problem+json errors, and the asynqmon dashboard mount. It
// produces tasks through the outbox and never runs one.
package api
