package tasks

import (
	"bytes"
	"encoding/json"
	"fmt"

	"github.com/google/uuid"
	"github.com/hibiken/asynq"
)

// Payload is any task payload: it knows how to validate itself.
type Payload interface {
	Validate() error
}

// Decode decodes and validates the payload of t into a P. A malformed payload
// can never succeed however often it is retried, so the error wraps
// asynq.SkipRetry: the task goes straight to the archive, where ops see it.
func Decode[P Payload](t *asynq.Task) (P, error) {
	var p P
	dec := json.NewDecoder(bytes.NewReader(t.Payload()))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		return p, fmt.Errorf("decode %s payload: %v: %w", t.Type(), err, asynq.SkipRetry)
	}
	if dec.More() {
		return p, fmt.Errorf("decode %s payload: trailing data: %w", t.Type(), asynq.SkipRetry)
	}
	if err := p.Validate(); err != nil {
		return p, fmt.Errorf("decode %s payload: %v: %w", t.Type(), err, asynq.SkipRetry)
	}
	return p, nil
}

func validUUID(field, v string) error {
	if v == "" {
		return fmt.Errorf("%s: required", field)
	}
	if _, err := uuid.Parse(v); err != nil || len(v) != 36 {
		return fmt.Errorf("%s: not a uuid", field)
	}
	return nil
}
