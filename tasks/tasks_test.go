package tasks_test

import (
	"errors"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/cepcomunicacion/cepjobs/tasks"
)

const leadID = "0b7f4a4e-8f0e-4c1b-9d7a-3c2f1e0d9b8a"

func TestNewLeadProcessSetsOptions(t *testing.T) {
	task, err := tasks.NewLeadProcess(tasks.LeadProcess{LeadID: leadID}, "outbox-1")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := task.Type(), "lead:process"; got != want {
		t.Errorf("type: got %q, want %q", got, want)
	}
	if got, want := string(task.Payload()), `{"lead_id":"`+leadID+`"}`; got != want {
		t.Errorf("payload: got %s, want %s", got, want)
	}
	spec, _ := tasks.SpecOf(tasks.TypeLeadProcess)
	if spec.Queue != tasks.QueueCritical || spec.Timeout != time.Minute {
		t.Errorf("spec: got %+v", spec)
	}
}

func TestConstructorsRejectBadPayloads(t *testing.T) {
	if _, err := tasks.NewLeadProcess(tasks.LeadProcess{LeadID: "nope"}, "x"); err == nil {
		t.Error("lead:process with a bad lead id: got nil error")
	}
	if _, err := tasks.NewLeadProcess(tasks.LeadProcess{LeadID: leadID}, ""); err == nil {
		t.Error("lead:process without task id: got nil error")
	}
	if _, err := tasks.NewLeadDeliver(tasks.LeadDeliver{LeadID: leadID, Channel: "fax"}); err == nil {
		t.Error("lead:deliver to an unknown channel: got nil error")
	}
	if _, err := tasks.Build("nope:nope", nil, "x"); err == nil {
		t.Error("unknown type: got nil error")
	}
}

func TestLeadDeliverTaskIDIsDeterministic(t *testing.T) {
	// Fan-out runs again after a crash: the same lead and channel must map to
	// the same TaskID so asynq refuses the second copy.
	p := tasks.LeadDeliver{LeadID: leadID, Channel: tasks.ChannelMeta}
	a, err := tasks.NewLeadDeliver(p)
	if err != nil {
		t.Fatal(err)
	}
	if a.Type() != tasks.TypeLeadDeliver {
		t.Errorf("type: got %q", a.Type())
	}
}

func TestDecode(t *testing.T) {
	good := asynq.NewTask(tasks.TypeLeadProcess, []byte(`{"lead_id":"`+leadID+`"}`))
	p, err := tasks.Decode[tasks.LeadProcess](good)
	if err != nil {
		t.Fatalf("good payload: %v", err)
	}
	if p.LeadID != leadID {
		t.Errorf("lead id: got %q, want %q", p.LeadID, leadID)
	}

	for name, payload := range map[string]string{
		"not json":      `{"lead_id":`,
		"unknown field": `{"lead_id":"` + leadID + `","email":"a@b.c"}`,
		"bad id":        `{"lead_id":"42"}`,
		"empty":         ``,
		"trailing":      `{"lead_id":"` + leadID + `"} {}`,
	} {
		_, err := tasks.Decode[tasks.LeadProcess](asynq.NewTask(tasks.TypeLeadProcess, []byte(payload)))
		if !errors.Is(err, asynq.SkipRetry) {
			t.Errorf("%s: got %v, want an error wrapping asynq.SkipRetry", name, err)
		}
	}
}
