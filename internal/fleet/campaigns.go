package fleet

import (
	"fmt"

	"github.com/cepcomunicacion/cepjobs/handlers"
	"github.com/cepcomunicacion/cepjobs/internal/mandrill"
)

// addCampaigns registers campaign:launch and campaign:send-batch on
// worker-automation. They are registered with or without Mandrill: without
// it a launch fails the campaign at once, saying which variables to set,
// instead of leaving the task to find no handler and the campaign
// launching for ever.
func addCampaigns(x automationExtras) error {
	d := handlers.CampaignDeps{
		Store: x.base.store, Queue: x.base.client, Throttle: x.limiter, Logger: x.log,
	}
	if x.cfg.Mandrill.Enabled() {
		c, err := mandrill.New(x.cfg.Mandrill, nil)
		if err != nil {
			return fmt.Errorf("campaigns: %w", err)
		}
		d.Mandrill = c
		x.log.Info("campaigns on", "sender", "mandrill")
	} else {
		x.log.Info("campaigns off", "reason", handlers.CampaignMailOff)
	}
	handlers.NewCampaigns(d).Register(x.mux)
	return nil
}
