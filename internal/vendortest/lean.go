package vendortest

// Lean makes the server count calls per key only, without keeping each
// call's body and time: for long runs (hundreds of thousands of calls) where
// Bodies and Times are not needed.
func (s *Server) Lean() *Server {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lean = true
	return s
}
