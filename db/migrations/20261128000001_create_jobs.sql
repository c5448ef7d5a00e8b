-- migrate:up

-- Smallest slot strictly after `now` on the grid anchor + k * interval (k >= 1).
-- Slots are counted from the previous due time, never from when a run happened
-- to start, so the schedule does not drift; slots missed while nothing ran
-- (downtime, a long run) coalesce into the single next slot.
CREATE FUNCTION job_next_slot(anchor timestamptz, interval_seconds integer, now timestamptz)
RETURNS timestamptz
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
AS $$
  SELECT anchor + make_interval(secs => interval_seconds * (
    CASE WHEN now < anchor THEN 1
         ELSE floor(extract(epoch FROM (now - anchor)) / interval_seconds)::bigint + 1
    END))
$$;

CREATE TABLE jobs (
  id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  name              text        NOT NULL,
  handler           text        NOT NULL,
  interval_seconds  integer     NOT NULL,
  batch_size        integer     NOT NULL,
  status            text        NOT NULL DEFAULT 'inactive',
  next_run_at       timestamptz NOT NULL DEFAULT now(),
  last_triggered_at timestamptz,
  -- The run in flight: which run, who holds it, until when, and the slot it serves.
  run_id            uuid,
  run_due_at        timestamptz,
  lease_until       timestamptz,
  locked_by         text,
  -- Outcome bookkeeping.
  run_count         bigint      NOT NULL DEFAULT 0,
  failure_count     bigint      NOT NULL DEFAULT 0,
  last_error        text,
  created_at        timestamptz NOT NULL DEFAULT now(),
  updated_at        timestamptz NOT NULL DEFAULT now(),

  CONSTRAINT jobs_name_key UNIQUE (name),
  CONSTRAINT jobs_name_format CHECK (name ~ '^[a-z0-9][a-z0-9._-]{0,63}$'),
  CONSTRAINT jobs_handler_not_blank CHECK (length(handler) BETWEEN 1 AND 100),
  CONSTRAINT jobs_status_valid CHECK (status IN ('active', 'inactive', 'in_progress')),
  CONSTRAINT jobs_interval_seconds_range CHECK (interval_seconds BETWEEN 1 AND 86400),
  CONSTRAINT jobs_batch_size_range CHECK (batch_size BETWEEN 1 AND 10000),
  CONSTRAINT jobs_run_fields_iff_in_progress CHECK (
    num_nonnulls(run_id, run_due_at, lease_until, locked_by)
      = CASE WHEN status = 'in_progress' THEN 4 ELSE 0 END
  ),
  CONSTRAINT jobs_counts_non_negative CHECK (run_count >= 0 AND failure_count >= 0)
);

-- The fetcher's two questions: which active jobs are due, which leases expired.
CREATE INDEX jobs_active_next_run_at_idx ON jobs (next_run_at) WHERE status = 'active';
CREATE INDEX jobs_in_progress_lease_idx ON jobs (lease_until) WHERE status = 'in_progress';

-- Sending starts on first deploy: the default job of the original service.
INSERT INTO jobs (name, handler, interval_seconds, batch_size, status)
VALUES ('message-sender', 'send-messages', 120, 2, 'active');
