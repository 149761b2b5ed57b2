package graph

import (
	"encoding/json"
	"net/http"
	"time"
)

// maxRegain caps Meta's estimate like vendor.RetryAfter caps Retry-After:
// a later attempt that is still throttled reads a fresh estimate.
const maxRegain = time.Hour

// RegainAccess reads how long Meta expects a throttle to last from the
// X-Business-Use-Case-Usage header: a JSON object keyed by business id,
// each holding usage entries whose estimated_time_to_regain_access is in
// minutes. The longest estimate wins; zero when the header is absent,
// unreadable or names no wait. X-App-Usage carries only percentages, so it
// gives no wait.
func RegainAccess(h http.Header) time.Duration {
	raw := h.Get("X-Business-Use-Case-Usage")
	if raw == "" {
		return 0
	}
	var usage map[string][]struct {
		Regain float64 `json:"estimated_time_to_regain_access"`
	}
	if err := json.Unmarshal([]byte(raw), &usage); err != nil {
		return 0
	}
	var longest float64
	for _, entries := range usage {
		for _, e := range entries {
			longest = max(longest, e.Regain)
		}
	}
	if longest <= 0 {
		return 0
	}
	return min(time.Duration(longest*float64(time.Minute)), maxRegain)
}
