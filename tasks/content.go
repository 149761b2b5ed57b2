package tasks

// ContentGenerate asks for one AI content job to be generated.
type ContentGenerate struct {
	JobID string `json:"job_id"`
}

// Validate reports what is wrong with the payload.
func (p ContentGenerate) Validate() error { return validUUID("job_id", p.JobID) }

// ContentCallback asks for a finished content job to be POSTed to its
// callback URL.
type ContentCallback struct {
	JobID string `json:"job_id"`
}

// Validate reports what is wrong with the payload.
func (p ContentCallback) Validate() error { return validUUID("job_id", p.JobID) }
