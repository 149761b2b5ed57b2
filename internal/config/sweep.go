package config

import (
	"errors"
	"time"
)

func (c OutboxConfig) validateSweep() []error {
	var errs []error
	if c.SweepAfter < 0 || (c.SweepAfter > 0 && c.SweepAfter < time.Second) {
		errs = append(errs, errors.New("CEPJOBS_SWEEP_AFTER: must be 0 (off) or at least 1s"))
	}
	if c.SweepInterval < 100*time.Millisecond {
		errs = append(errs, errors.New("CEPJOBS_SWEEP_INTERVAL: must be at least 100ms"))
	}
	if c.SweepBatch < 1 || c.SweepBatch > 10000 {
		errs = append(errs, errors.New("CEPJOBS_SWEEP_BATCH: must be between 1 and 10000"))
	}
	return errs
}
