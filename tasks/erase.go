package tasks

// LeadErase asks for a lead's personal data to be erased (RGPD).
type LeadErase struct {
	LeadID string `json:"lead_id"`
}

// Validate reports what is wrong with the payload.
func (p LeadErase) Validate() error { return validUUID("lead_id", p.LeadID) }
