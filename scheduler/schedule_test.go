package scheduler

import (
	"testing"
	"time"
)

func TestSlots(t *testing.T) {
	t.Parallel()
	madrid, err := time.LoadLocation("Europe/Madrid")
	if err != nil {
		t.Fatal(err)
	}
	utc := func(s string) time.Time {
		tm, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			t.Fatal(err)
		}
		return tm
	}
	for _, tc := range []struct {
		spec       string
		loc        *time.Location // Params.Location
		now        string
		prev, next string
	}{
		// A job woken at 03:00 but running late still names 03:00.
		{"0 3 * * *", time.UTC, "2026-11-28T03:00:00.250Z", "2026-11-28T03:00:00Z", "2026-11-29T03:00:00Z"},
		{"0 3 * * *", time.UTC, "2026-11-28T03:00:00Z", "2026-11-28T03:00:00Z", "2026-11-29T03:00:00Z"},
		{"0 3 * * *", time.UTC, "2026-11-28T02:59:59.999Z", "2026-11-27T03:00:00Z", "2026-11-28T03:00:00Z"},
		{"0 * * * *", time.UTC, "2026-11-28T10:15:00Z", "2026-11-28T10:00:00Z", "2026-11-28T11:00:00Z"},
		{"*/5 * * * *", time.UTC, "2026-11-28T10:14:59Z", "2026-11-28T10:10:00Z", "2026-11-28T10:15:00Z"},
		{"@monthly", time.UTC, "2026-11-28T10:00:00Z", "2026-11-01T00:00:00Z", "2026-12-01T00:00:00Z"},
		{"0 0 1 1 *", time.UTC, "2026-11-28T10:00:00Z", "2026-01-01T00:00:00Z", "2027-01-01T00:00:00Z"},
		{"0 0 29 2 *", time.UTC, "2026-11-28T10:00:00Z", "2024-02-29T00:00:00Z", "2028-02-29T00:00:00Z"},
		// Unzoned specs follow Params.Location; CRON_TZ= wins over it.
		{"0 7 * * 1", madrid, "2026-11-28T10:00:00Z", "2026-11-23T06:00:00Z", "2026-11-30T06:00:00Z"},
		{"CRON_TZ=Europe/Madrid 0 7 * * 1", time.UTC, "2026-11-28T10:00:00Z", "2026-11-23T06:00:00Z", "2026-11-30T06:00:00Z"},
		{"CRON_TZ=UTC 0 7 * * 1", madrid, "2026-11-28T10:00:00Z", "2026-11-23T07:00:00Z", "2026-11-30T07:00:00Z"},
		// Summer time: 07:00 CEST is 05:00 UTC.
		{"CRON_TZ=Europe/Madrid 0 7 * * *", time.UTC, "2026-07-01T05:30:00Z", "2026-07-01T05:00:00Z", "2026-07-02T05:00:00Z"},
		// @every is aligned to the clock, so every replica agrees.
		{"@every 1s", time.UTC, "2026-11-28T10:00:07.6Z", "2026-11-28T10:00:07Z", "2026-11-28T10:00:08Z"},
		{"@every 15m", time.UTC, "2026-11-28T10:20:00Z", "2026-11-28T10:15:00Z", "2026-11-28T10:30:00Z"},
		{"@every 15m", time.UTC, "2026-11-28T10:30:00Z", "2026-11-28T10:30:00Z", "2026-11-28T10:45:00Z"},
	} {
		s, err := parseSpec(tc.spec, tc.loc)
		if err != nil {
			t.Errorf("%s: %v", tc.spec, err)
			continue
		}
		now := utc(tc.now)
		if got, want := s.Prev(now), utc(tc.prev); !got.Equal(want) {
			t.Errorf("%s in %s: Prev(%s): got %s, want %s", tc.spec, tc.loc, tc.now, got.UTC(), want)
		}
		if got, want := s.Next(now), utc(tc.next); !got.Equal(want) {
			t.Errorf("%s in %s: Next(%s): got %s, want %s", tc.spec, tc.loc, tc.now, got.UTC(), want)
		}
	}
}

func TestSlotTaskID(t *testing.T) {
	t.Parallel()
	madrid, err := time.LoadLocation("Europe/Madrid")
	if err != nil {
		t.Fatal(err)
	}
	slot := time.Date(2026, 11, 28, 4, 0, 0, 0, madrid)
	if got, want := SlotTaskID("backup:database", slot), "backup:database:2026-11-28T03:00:00Z"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}
