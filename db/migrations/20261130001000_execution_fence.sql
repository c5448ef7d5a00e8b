-- migrate:up

-- One execution per run (DESIGN.md "Failure behaviour"). A run (run_id) can be
-- picked up more than once: pg-boss retries it when its worker looks dead, and
-- a worker that was only frozen wakes up later. Each execution that starts
-- writes a fresh execution_id on the job; every lease renewal, message claim
-- and run end names its execution_id, so a superseded execution claims
-- nothing more and never touches the job's bookkeeping.
ALTER TABLE jobs ADD COLUMN execution_id uuid;
-- The run a stop interrupted: its end may still be counted (run_count, last
-- error) as long as no later run has been claimed since.
ALTER TABLE jobs ADD COLUMN stopped_run_id uuid;

ALTER TABLE jobs ADD CONSTRAINT jobs_execution_only_in_progress
  CHECK (execution_id IS NULL OR status = 'in_progress');

CREATE UNIQUE INDEX jobs_execution_id_key ON jobs (execution_id) WHERE execution_id IS NOT NULL;
