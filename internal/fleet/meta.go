package fleet

// addMetaLeadgen registers meta:leadgen on worker-automation (placeholder).
func addMetaLeadgen(x automationExtras) error { return nil }

// addMetaInsights registers campaign:sync-meta on worker-stats (placeholder).
func addMetaInsights(x statsExtras) error { return nil }
