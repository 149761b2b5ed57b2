package config

import (
	"errors"
	"time"
)

func (c OutboxConfig) validateSweep() []error {
	var errs []error
	// The sweep is what sends the task of a lead stored by an intake that
	// died before sending it (a new lead has no outbox row): it cannot be
	// turned off.
	if c.SweepAfter < time.Second {
		errs = append(errs, errors.New("CEPJOBS_SWEEP_AFTER: must be at least 1s (the sweep sends the tasks of leads an intake stored but could not send; it cannot be turned off)"))
	}
	if c.SweepInterval < 100*time.Millisecond {
		errs = append(errs, errors.New("CEPJOBS_SWEEP_INTERVAL: must be at least 100ms"))
	}
	if c.SweepBatch < 1 || c.SweepBatch > 10000 {
		errs = append(errs, errors.New("CEPJOBS_SWEEP_BATCH: must be between 1 and 10000"))
	}
	return errs
}
