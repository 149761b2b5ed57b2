---- tern: disable-tx ----
-- Concurrently: a plain DROP INDEX waits for an ACCESS EXCLUSIVE lock, which
-- a running pg_dump (ACCESS SHARE for the whole dump) holds off, and every
-- outbox write would queue behind it. This waits for the dump instead,
-- without blocking writes. Alone in its file: it cannot run in a
-- transaction. "if exists": re-run safely after an interruption.
drop index concurrently if exists cepjobs.outbox_lead_process_idx;
