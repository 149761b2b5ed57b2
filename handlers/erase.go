package handlers

import (
	"context"
	"errors"
	"fmt"

	"github.com/hibiken/asynq"

	"github.com/cepcomunicacion/cepjobs/internal/vendor"
	"github.com/cepcomunicacion/cepjobs/store"
	"github.com/cepcomunicacion/cepjobs/tasks"
)

// MemberEraser deletes a person from the mailing list for good.
type MemberEraser interface {
	DeleteMemberPermanently(ctx context.Context, email string) error
}

// eraseLead carries out an RGPD erasure: the Mailchimp member first (it is
// found by the address, which the next step blanks), then every personal
// field in Postgres. Each step is recorded as it completes, so a retry
// resumes where it stopped.
func (a *Automation) eraseLead(ctx context.Context, t *asynq.Task) error {
	p, err := tasks.Decode[tasks.LeadErase](t)
	if err != nil {
		return err
	}
	e, err := a.d.Store.ErasureOf(ctx, p.LeadID)
	if errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("erase lead %s: no erasure requested: %w", p.LeadID, asynq.SkipRetry)
	}
	if err != nil {
		return err
	}
	if e.CompletedAt != nil {
		return nil
	}
	if e.Steps["mailchimp"] == "" {
		outcome := "not configured"
		if a.d.Eraser != nil {
			l, err := a.d.Store.LeadDetail(ctx, p.LeadID)
			if err != nil {
				return err
			}
			outcome = "no address"
			if l.Email != "" {
				err := a.d.Eraser.DeleteMemberPermanently(ctx, l.Email)
				switch {
				case err == nil:
					outcome = "deleted"
				case vendor.IsPermanent(err):
					// Recorded for ops to follow up by hand; the personal
					// data here is erased all the same.
					outcome = "failed: " + err.Error()
					a.d.Logger.Error("mailchimp erasure failed; follow up by hand", "lead_id", p.LeadID, "err", err)
				default:
					return fmt.Errorf("erase lead %s: %w", p.LeadID, err)
				}
			}
		}
		if err := a.d.Store.RecordErasureStep(ctx, p.LeadID, "mailchimp", outcome, a.d.Now()); err != nil {
			return err
		}
	}
	if err := a.d.Store.EraseLead(ctx, p.LeadID, a.d.Now()); err != nil {
		return err
	}
	a.d.Logger.Info("lead erased", "lead_id", p.LeadID)
	return nil
}
