package scheduler_test

import (
	"errors"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/hibiken/asynq"

	"github.com/cepcomunicacion/cepjobs/internal/testenv"
	"github.com/cepcomunicacion/cepjobs/scheduler"
	"github.com/cepcomunicacion/cepjobs/tasks"
)

// Two replicas fire the same @every 1s entry for a few seconds. Each slot
// must end up in the queue exactly once, and both replicas must have tried
// it: one wins, the other is told the TaskID is taken.
func TestReplicasEnqueueEachSlotOnce(t *testing.T) {
	b := setup(t)
	entry := scheduler.Entry{Name: "tick", Spec: "@every 1s", TaskType: tasks.TypeBackupDatabase, Payload: slotPayload}
	queue := tasks.QueueBackup

	reps := []*recorder{b.replica(t), b.replica(t)}
	var stops []func()
	for _, r := range reps {
		s := mustNew(t, scheduler.Params{Entries: []scheduler.Entry{entry}, Enqueuer: r, Grace: time.Minute})
		stops = append(stops, start(t, s))
	}

	conflicts := func(r *recorder) int {
		n := 0
		for _, c := range r.snapshot() {
			if errors.Is(c.err, asynq.ErrTaskIDConflict) {
				n++
			}
		}
		return n
	}
	testenv.Eventually(t, 10*time.Second, "4 slots enqueued and a conflict on each replica", func() bool {
		return len(b.pending(t, queue)) >= 4 && conflicts(reps[0]) > 0 && conflicts(reps[1]) > 0
	})
	for _, stop := range stops {
		stop()
	}

	// Every attempt either won or conflicted; per slot, exactly one won.
	wins := map[string]int{}
	tried := map[string]int{}
	for i, r := range reps {
		for _, c := range r.snapshot() {
			tried[c.id]++
			switch {
			case c.err == nil:
				wins[c.id]++
			case errors.Is(c.err, asynq.ErrTaskIDConflict):
			default:
				t.Errorf("replica %d: enqueue %s: %v", i, c.id, c.err)
			}
		}
	}
	for id, n := range wins {
		if n != 1 {
			t.Errorf("slot %s: got %d successful enqueues, want 1", id, n)
		}
	}

	got := b.pending(t, queue)
	if diff := cmp.Diff(slices.Sorted(maps.Keys(tried)), slices.Sorted(maps.Keys(got))); diff != "" {
		t.Errorf("slots tried vs tasks queued (-tried +queued):\n%s", diff)
	}
	// The slots are consecutive seconds: none skipped, none doubled.
	var slots []time.Time
	for id := range got {
		slot, err := time.Parse(time.RFC3339, strings.TrimPrefix(id, tasks.TypeBackupDatabase+":"))
		if err != nil {
			t.Fatalf("task id %q: want %s:<RFC 3339 slot>: %v", id, tasks.TypeBackupDatabase, err)
		}
		if want := `{"slot":"` + slot.Format(time.RFC3339) + `"}`; got[id] != want {
			t.Errorf("task %s payload: got %s, want %s", id, got[id], want)
		}
		slots = append(slots, slot)
	}
	slices.SortFunc(slots, time.Time.Compare)
	span := int(slots[len(slots)-1].Sub(slots[0])/time.Second) + 1
	if len(slots) != span {
		t.Errorf("got %d tasks for %d one-second slots %s..%s, want one per slot", len(slots), span, slots[0], slots[len(slots)-1])
	}
	t.Logf("%d slots; attempts per replica: %d, %d; conflicts: %d, %d",
		len(slots), len(reps[0].snapshot()), len(reps[1].snapshot()), conflicts(reps[0]), conflicts(reps[1]))
}

func TestCatchUp(t *testing.T) {
	table, err := scheduler.DefaultTable("0 3 * * *", "0 * * * *", "30 4 * * *")
	if err != nil {
		t.Fatal(err)
	}
	backup, rollup, maintenance := table[0], table[1], table[2]

	t.Run("missed slot fires once across restarts", func(t *testing.T) {
		b := setup(t)
		p := scheduler.Params{Entries: []scheduler.Entry{backup}, Now: fixed("2026-11-28T03:10:00Z"), Grace: 6 * time.Hour}

		// First process: a live Run, stopped once the slot shows up.
		first := b.replica(t)
		p.Enqueuer = first
		stop := start(t, mustNew(t, p))
		want := map[string]string{"backup:database:2026-11-28T03:00:00Z": `{"slot":"2026-11-28T03:00:00Z"}`}
		testenv.Eventually(t, 5*time.Second, "the 03:00 backup", func() bool { return len(b.pending(t, tasks.QueueBackup)) > 0 })
		stop()
		if diff := cmp.Diff(want, b.pending(t, tasks.QueueBackup)); diff != "" {
			t.Fatalf("after first start (-want +got):\n%s", diff)
		}

		// Second process: tries the same slot, is told it is done.
		second := b.replica(t)
		p.Enqueuer = second
		catchUpPass(t, mustNew(t, p))
		calls := second.snapshot()
		if len(calls) != 1 || !errors.Is(calls[0].err, asynq.ErrTaskIDConflict) {
			t.Errorf("second start: got calls %+v, want one ErrTaskIDConflict", calls)
		}
		if diff := cmp.Diff(want, b.pending(t, tasks.QueueBackup)); diff != "" {
			t.Errorf("after second start (-want +got):\n%s", diff)
		}
	})

	for _, tc := range []struct {
		name    string
		now     string
		grace   time.Duration
		entries []scheduler.Entry
		want    map[string][]string // queue → task IDs
	}{
		{
			name:    "beyond grace nothing is caught up",
			now:     "2026-11-28T09:30:00Z",
			grace:   6 * time.Hour,
			entries: []scheduler.Entry{backup},
			want:    map[string][]string{tasks.QueueBackup: nil},
		},
		{
			name:    "at the edge of grace the slot still fires",
			now:     "2026-11-28T09:00:00Z",
			grace:   6 * time.Hour,
			entries: []scheduler.Entry{backup},
			want:    map[string][]string{tasks.QueueBackup: {"backup:database:2026-11-28T03:00:00Z"}},
		},
		{
			// Down since before 26 Nov 03:00: both nights are within grace,
			// only the latest runs.
			name:    "only the latest of several missed slots",
			now:     "2026-11-28T02:00:00Z",
			grace:   72 * time.Hour,
			entries: []scheduler.Entry{backup},
			want:    map[string][]string{tasks.QueueBackup: {"backup:database:2026-11-27T03:00:00Z"}},
		},
		{
			name:  "grace per entry",
			now:   "2026-11-28T20:00:00Z",
			grace: 6 * time.Hour,
			entries: []scheduler.Entry{
				backup,                               // 17h ago: beyond the default 6h
				withGrace(rollup, -1),                // 1h ago, but catch-up is off
				withGrace(maintenance, 24*time.Hour), // 15h30m ago, within its own 24h
			},
			want: map[string][]string{
				tasks.QueueBackup: nil,
				tasks.QueueStats:  nil,
				tasks.QueueLow:    {"maintenance:purge:2026-11-28T04:30:00Z"},
			},
		},
		{
			name:    "zero grace turns catch-up off",
			now:     "2026-11-28T03:00:30Z",
			entries: []scheduler.Entry{backup},
			want:    map[string][]string{tasks.QueueBackup: nil},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := setup(t)
			catchUpPass(t, mustNew(t, scheduler.Params{Entries: tc.entries, Enqueuer: b.replica(t), Now: fixed(tc.now), Grace: tc.grace}))
			for queue, want := range tc.want {
				got := slices.Sorted(maps.Keys(b.pending(t, queue)))
				if diff := cmp.Diff(want, got); diff != "" {
					t.Errorf("queue %s (-want +got):\n%s", queue, diff)
				}
			}
		})
	}
}

func withGrace(e scheduler.Entry, g time.Duration) scheduler.Entry {
	e.Grace = g
	return e
}

// A caught-up slot is deduplicated only while its TaskID is retained, so
// Retention must outlast the grace window even where the task type's own
// default is shorter.
func TestRetentionCoversGrace(t *testing.T) {
	b := setup(t)
	table, err := scheduler.DefaultTable("0 3 * * *", "0 * * * *", "30 4 * * *")
	if err != nil {
		t.Fatal(err)
	}
	catchUpPass(t, mustNew(t, scheduler.Params{
		Entries:  table[:2],
		Enqueuer: b.replica(t),
		Now:      fixed("2026-11-28T03:10:00Z"),
		Grace:    72 * time.Hour,
	}))
	for _, tc := range []struct {
		queue, id string
		want      time.Duration
	}{
		// backup:database keeps 7 days, more than 72h + margin.
		{tasks.QueueBackup, "backup:database:2026-11-28T03:00:00Z", 7 * 24 * time.Hour},
		// stats:rollup keeps 48h by default: raised to grace + 1h.
		{tasks.QueueStats, "stats:rollup:2026-11-28T03:00:00Z", 73 * time.Hour},
	} {
		info, err := b.inspector.GetTaskInfo(tc.queue, tc.id)
		if err != nil {
			t.Fatalf("get %s: %v", tc.id, err)
		}
		if info.Retention != tc.want {
			t.Errorf("%s retention: got %s, want %s", tc.id, info.Retention, tc.want)
		}
	}
}

func TestNewRejectsBadTables(t *testing.T) {
	t.Parallel()
	good := scheduler.Entry{Name: "b", Spec: "0 3 * * *", TaskType: tasks.TypeBackupDatabase, Payload: slotPayload}
	for name, tc := range map[string]struct {
		entries []scheduler.Entry
		want    string
	}{
		"bad spec":     {[]scheduler.Entry{{Name: "x", Spec: "0 3 * *", TaskType: tasks.TypeBackupDatabase, Payload: slotPayload}}, `entry 1 (x): "0 3 * *" is not a valid schedule`},
		"unknown type": {[]scheduler.Entry{{Name: "x", Spec: "@daily", TaskType: "nope:nope", Payload: slotPayload}}, `unknown task type "nope:nope"`},
		"no payload":   {[]scheduler.Entry{{Name: "x", Spec: "@daily", TaskType: tasks.TypeBackupDatabase}}, "payload function required"},
		"no name":      {[]scheduler.Entry{{Spec: "@daily", TaskType: tasks.TypeBackupDatabase, Payload: slotPayload}}, "name required"},
		"same name":    {[]scheduler.Entry{good, withType(good, tasks.TypeStatsRollup)}, "entry 2 (b): name used twice"},
		"same type":    {[]scheduler.Entry{good, withName(good, "c")}, "task type backup:database already scheduled by b"},
	} {
		_, err := scheduler.New(scheduler.Params{Entries: tc.entries})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want an error containing %q", name, err, tc.want)
		}
	}
}

func withType(e scheduler.Entry, typ string) scheduler.Entry { e.TaskType = typ; return e }
func withName(e scheduler.Entry, n string) scheduler.Entry   { e.Name = n; return e }

func TestRunWithoutEnqueuer(t *testing.T) {
	t.Parallel()
	s := mustNew(t, scheduler.Params{})
	if err := s.Run(t.Context()); err == nil {
		t.Error("got nil error, want one saying there is no enqueuer")
	}
}
