package fleet

// addCampaigns registers campaign:launch and campaign:send-batch on
// worker-automation (placeholder).
func addCampaigns(x automationExtras) error { return nil }
