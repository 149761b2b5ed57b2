package store

// StaleQueuedLeadsSQL is exported for the plan test.
const StaleQueuedLeadsSQL = staleQueuedLeadsSQL
