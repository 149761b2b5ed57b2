package scheduler

import (
	"testing"
	"time"
)

// The midnight roll-up covers the whole of yesterday; the others, today so
// far. Rolling up "the slot's day" would leave every day's last hour out.
func TestRollupPayloadNamesTheDayThatEnded(t *testing.T) {
	for slot, want := range map[string]string{
		"2026-11-28T00:00:00Z": `{"day":"2026-11-27"}`,
		"2026-11-28T01:00:00Z": `{"day":"2026-11-28"}`,
		"2026-11-28T23:00:00Z": `{"day":"2026-11-28"}`,
	} {
		s, _ := time.Parse(time.RFC3339, slot)
		got, err := rollupPayload(s)
		if err != nil || string(got) != want {
			t.Errorf("rollupPayload(%s): got %s %v, want %s", slot, got, err, want)
		}
	}
}
