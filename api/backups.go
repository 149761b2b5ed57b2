package api

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"time"

	"github.com/cepcomunicacion/cepjobs/internal/backup"
	"github.com/cepcomunicacion/cepjobs/tasks"
)

// backupLister lists the stored backups of one database.
type backupLister interface {
	List(ctx context.Context, db string) ([]backup.Object, error)
}

// taskQueuer writes a standalone outbox row.
type taskQueuer interface {
	QueueTask(ctx context.Context, taskType string, payload []byte, now time.Time) (string, error)
}

type backupRequested struct {
	TaskID string    `json:"task_id"`
	Status string    `json:"status"`
	Slot   time.Time `json:"slot"`
}

// handleCreateBackup queues an on-demand backup (before a deployment).
func (s *Server) handleCreateBackup(q taskQueuer) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		slot := s.now().UTC().Truncate(time.Second)
		payload, err := json.Marshal(tasks.BackupDatabase{Slot: slot})
		if err != nil {
			s.fail(w, r, err)
			return
		}
		id, err := q.QueueTask(r.Context(), tasks.TypeBackupDatabase, payload, s.now())
		if err != nil {
			s.fail(w, r, err)
			return
		}
		s.dispatch.Now(r.Context(), id, tasks.TypeBackupDatabase, payload)
		writeJSON(w, http.StatusAccepted, backupRequested{TaskID: id, Status: "queued", Slot: slot})
	})
}

type backupItem struct {
	Key    string    `json:"key"`
	Size   int64     `json:"size"`
	Time   time.Time `json:"time"`
	SHA256 string    `json:"sha256"`
}

// handleListBackups lists the stored backups, newest first.
func (s *Server) handleListBackups(l backupLister, db string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		objs, err := l.List(r.Context(), db)
		if err != nil && !errors.Is(err, backup.ErrNotFound) {
			p := problem(http.StatusServiceUnavailable, "object storage did not answer; retry later")
			p.retryAfter = 5 * time.Second
			s.log.Warn("list backups", "err", err)
			writeProblem(w, r, p)
			return
		}
		out := []backupItem{}
		for _, o := range objs {
			out = append(out, backupItem{Key: o.Key, Size: o.Size, Time: o.Time.UTC(), SHA256: o.SHA256})
		}
		writeJSON(w, http.StatusOK, map[string]any{"database": db, "backups": out})
	})
}

func backupsOff() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeProblem(w, r, problem(http.StatusServiceUnavailable, "backups are not configured: set S3_ENDPOINT, S3_ACCESS_KEY and S3_SECRET_KEY"))
	})
}
