-- Jobs: the operator's switches and the fetcher's claims.
-- Every write bumps updated_at; run fields are set and cleared together
-- (constraint jobs_run_fields_iff_in_progress).

-- name: ListJobs :many
SELECT id, name, handler, interval_seconds, batch_size, status, next_run_at,
       last_triggered_at, run_count::integer, failure_count::integer, last_error, created_at, updated_at
FROM jobs
ORDER BY name;

-- name: GetJobByName :one
SELECT id, name, handler, interval_seconds, batch_size, status, next_run_at,
       last_triggered_at, run_count::integer, failure_count::integer, last_error, created_at, updated_at
FROM jobs
WHERE name = $1;

-- name: CreateJob :one
INSERT INTO jobs (name, handler, interval_seconds, batch_size, status)
VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (name) DO NOTHING
RETURNING id, name, handler, interval_seconds, batch_size, status, next_run_at,
          last_triggered_at, run_count::integer, failure_count::integer, last_error, created_at, updated_at;

-- name: UpdateJobSettings :one
-- A null argument keeps the value. A shorter interval takes effect at once:
-- the next run comes no later than one new interval from now (a job at one
-- day patched to 5 s does not wait out the old day); a longer one from the
-- next slot on.
UPDATE jobs
SET interval_seconds = coalesce(sqlc.narg(interval_seconds), interval_seconds),
    next_run_at = least(next_run_at,
                        now() + make_interval(secs => coalesce(sqlc.narg(interval_seconds), interval_seconds))),
    batch_size = coalesce(sqlc.narg(batch_size), batch_size),
    updated_at = now()
WHERE name = sqlc.arg(name)
RETURNING id, name, handler, interval_seconds, batch_size, status, next_run_at,
          last_triggered_at, run_count::integer, failure_count::integer, last_error, created_at, updated_at;

-- name: StartJobs :many
-- Switches inactive jobs on (a null name means every job) and makes them due now.
-- Active and running jobs are left as they are, so a repeated start changes nothing.
UPDATE jobs
SET status = 'active', next_run_at = now(), updated_at = now()
WHERE status = 'inactive'
  AND (sqlc.narg(name)::text IS NULL OR name = sqlc.narg(name))
RETURNING id;

-- name: StopJobs :many
-- Switches jobs off (a null name means every job). A run in flight loses its
-- lease here, so when it ends it cannot put the job back to active: a stop wins.
UPDATE jobs
SET status = 'inactive', stopped_run_id = run_id, run_id = NULL, run_due_at = NULL, lease_until = NULL,
    locked_by = NULL, execution_id = NULL, updated_at = now()
WHERE status <> 'inactive'
  AND (sqlc.narg(name)::text IS NULL OR name = sqlc.narg(name))
RETURNING id;

-- name: ClaimDueJobs :many
-- The fetcher's claim: active jobs that are due and runs whose lease expired
-- (a crashed pod), skipping rows another pod holds. next_run_at moves to the
-- first slot after now on the job's own grid (no drift, missed slots coalesce);
-- a taken-over run keeps serving the slot it was claimed for. The due ids
-- are chosen once (MATERIALIZED): as a subquery joined into the UPDATE, a
-- plan from stale statistics may rescan it and claim max_jobs more per rescan.
WITH due AS MATERIALIZED (
  SELECT id, CASE WHEN status = 'active' THEN next_run_at ELSE run_due_at END AS due_at
  FROM jobs
  WHERE (status = 'active' AND next_run_at <= now())
     OR (status = 'in_progress' AND lease_until < now())
  ORDER BY next_run_at
  LIMIT sqlc.arg(max_jobs)::integer
  FOR UPDATE SKIP LOCKED
)
UPDATE jobs AS j
SET status = 'in_progress',
    run_id = gen_random_uuid(),
    execution_id = NULL,
    stopped_run_id = NULL,
    run_due_at = due.due_at,
    locked_by = sqlc.arg(owner)::text,
    lease_until = now() + make_interval(secs => sqlc.arg(lease_seconds)::integer),
    next_run_at = CASE WHEN j.next_run_at <= now()
                       THEN job_next_slot(j.next_run_at, j.interval_seconds, now())
                       ELSE j.next_run_at END,
    updated_at = now()
FROM due
WHERE j.id = due.id
RETURNING j.id, j.name, j.handler, j.batch_size, j.run_id, j.run_due_at AS due_at;

-- name: NextJobWakeUp :one
-- How long the fetcher may sleep: until the earliest active due time or lease
-- expiry, measured on the database clock.
SELECT (extract(epoch FROM (min(t) - now())) * 1000)::float8 AS wait_ms
FROM (
  SELECT min(next_run_at) AS t FROM jobs WHERE status = 'active'
  UNION ALL
  SELECT min(lease_until) FROM jobs WHERE status = 'in_progress'
) AS wake_ups;

-- name: BeginJobExecution :one
-- Starts one execution of a claimed run and fences off every other: it
-- succeeds only while the run is still the job's current one and no other
-- execution holds a live lease on it (a pg-boss retry of a run whose first
-- execution is merely frozen gets no row and is skipped). The new
-- execution_id must accompany every renewal, message claim and the run's end.
UPDATE jobs
SET execution_id = gen_random_uuid(),
    locked_by = sqlc.arg(owner)::text,
    lease_until = now() + make_interval(secs => sqlc.arg(lease_seconds)::integer),
    updated_at = now()
WHERE id = sqlc.arg(id) AND run_id = sqlc.arg(run_id) AND status = 'in_progress'
  AND (execution_id IS NULL OR lease_until < now())
RETURNING execution_id::text AS execution_id;

-- name: RenewJobLease :one
-- Keeps a long run ours; no row means this execution was superseded (the job
-- was stopped, its run taken over, or another execution started).
UPDATE jobs
SET lease_until = now() + make_interval(secs => sqlc.arg(lease_seconds)::integer)
WHERE id = sqlc.arg(id) AND execution_id = sqlc.arg(execution_id)::uuid
RETURNING id;

-- name: FinishJobRun :one
-- Records the end of an execution. The current execution returns the job to
-- active and counts the run. A run that a stop interrupted is still counted
-- (the job stays inactive) as long as no later run was claimed since. Any
-- other execution was superseded: no row, nothing changes.
UPDATE jobs
SET status = CASE WHEN execution_id = sqlc.arg(execution_id)::uuid THEN 'active' ELSE status END,
    run_id = CASE WHEN execution_id = sqlc.arg(execution_id)::uuid THEN NULL ELSE run_id END,
    run_due_at = CASE WHEN execution_id = sqlc.arg(execution_id)::uuid THEN NULL ELSE run_due_at END,
    lease_until = CASE WHEN execution_id = sqlc.arg(execution_id)::uuid THEN NULL ELSE lease_until END,
    locked_by = CASE WHEN execution_id = sqlc.arg(execution_id)::uuid THEN NULL ELSE locked_by END,
    execution_id = NULL,
    stopped_run_id = NULL,
    last_triggered_at = now(),
    run_count = run_count + 1,
    failure_count = failure_count + CASE WHEN sqlc.narg(error)::text IS NULL THEN 0 ELSE 1 END,
    last_error = sqlc.narg(error),
    updated_at = now()
WHERE id = sqlc.arg(id)
  AND (execution_id = sqlc.arg(execution_id)::uuid
       OR (run_id IS NULL AND stopped_run_id = sqlc.arg(run_id)::uuid))
RETURNING status;

-- name: ReleaseJobLeases :many
-- Graceful shutdown: hands this pod's unfinished runs back so another pod
-- picks them up at once instead of waiting for the lease to expire.
UPDATE jobs
SET lease_until = now() - interval '1 millisecond'
WHERE status = 'in_progress' AND locked_by = sqlc.arg(owner)::text
RETURNING id;

-- name: CountJobsByStatus :many
SELECT status, count(*)::integer AS total FROM jobs GROUP BY status;

-- name: JobNextSlot :one
-- Exposes the scheduling arithmetic so it can be tested on its own.
SELECT job_next_slot(sqlc.arg(anchor), sqlc.arg(interval_seconds), sqlc.arg(now))::timestamptz AS next_slot;

-- name: NotifyJobsChanged :exec
-- Wakes every pod's fetcher (LISTEN job_manager_jobs); delivered on commit.
SELECT pg_notify('job_manager_jobs', sqlc.arg(reason)::text);

-- name: ListenJobsChanged :exec
LISTEN job_manager_jobs;
