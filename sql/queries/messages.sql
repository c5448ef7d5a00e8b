-- Messages: intake, the sender's claims and outcomes, and the read side.

-- name: InsertMessage :one
-- send_at null: at once. A send time in the past is kept as asked and is due
-- now. Due now: available at once; ahead: promoted when it comes (see
-- PromoteDueMessages).
-- trace_parent: the W3C traceparent its delivery attempts continue.
INSERT INTO messages (recipient, content, send_at, next_attempt_at, trace_parent, available)
VALUES (sqlc.arg(recipient), sqlc.arg(content), sqlc.narg(send_at)::timestamptz,
        greatest(now(), sqlc.narg(send_at)::timestamptz),
        sqlc.narg(trace_parent)::text,
        coalesce(sqlc.narg(send_at)::timestamptz <= now(), true))
RETURNING id, recipient, content, status, attempts, external_message_id, last_error,
          send_at, created_at, sent_at;

-- name: InsertMessages :many
-- A whole batch in one statement; WITH ORDINALITY keeps the request's order.
-- An empty string in send_ats stands for "at once". available as in InsertMessage.
-- created_at is one clock reading (the CTE runs once) plus a microsecond per
-- position, so a batch is claimed and listed in the request's order. The
-- column default, a clock_timestamp() per row, gives rows inserted within the
-- same microsecond equal values, and the tie would fall to the random id.
-- Every message of the batch continues the one trace_parent (the request's).
WITH clock AS MATERIALIZED (SELECT clock_timestamp() AS at)
INSERT INTO messages (recipient, content, send_at, next_attempt_at, created_at, trace_parent, available)
SELECT m.recipient, m.content, nullif(m.send_at, '')::timestamptz,
       greatest(now(), nullif(m.send_at, '')::timestamptz),
       clock.at + (m.position - 1) * interval '1 microsecond',
       sqlc.narg(trace_parent)::text,
       coalesce(nullif(m.send_at, '')::timestamptz <= now(), true)
FROM ROWS FROM (unnest(sqlc.arg(recipients)::text[]), unnest(sqlc.arg(contents)::text[]),
                unnest(sqlc.arg(send_ats)::text[]))
     WITH ORDINALITY AS m(recipient, content, send_at, position),
     clock
ORDER BY m.position
RETURNING id, recipient, content, status, attempts, external_message_id, last_error,
          send_at, created_at, sent_at;

-- name: GetMessage :one
SELECT id, recipient, content, status, attempts, external_message_id, last_error,
       send_at, created_at, sent_at
FROM messages
WHERE id = $1;

-- name: ReleaseExpiredMessageLeases :many
-- Sends abandoned by a crashed pod become pending again, keeping their id
-- (the Idempotency-Key) and their attempt count. A claimed message was due,
-- so it is available again at once.
UPDATE messages
SET status = 'pending', available = (next_attempt_at <= now()), lease_until = NULL, locked_by = NULL,
    updated_at = now()
WHERE status = 'sending' AND lease_until < now()
RETURNING id;

-- name: PlanClaimInIndexOrder :exec
-- The first statement of the claim's transaction: its promotion and claim
-- take rows in index order (messages_scheduled_due_idx, then
-- messages_available_claim_idx) whatever the statistics say. Right after a
-- bulk intake into a table never analysed (rows that do not name `available`,
-- as an operator's INSERT … SELECT writes them), the planner guesses a few
-- hundred due rows and would read every due row with a bitmap scan and sort
-- them all to promote 2,000 (400,000 rows: 6,000 pages, 850 ms per claim,
-- where the index walk reads 66 pages). Without sorts and bitmap scans, an
-- ordered index walk that stops at LIMIT is the only plan left.
-- Without hash and merge joins, both statements then change the rows they
-- chose by a nested loop over those ids, one primary-key probe each, in the
-- order chosen (the claim returns its rows oldest first). With PostgreSQL's
-- default costs a hash join with a scan of the whole table looks cheaper on a
-- small table: at 20,000 rows it read all of them twice per claim, about 2 ms
-- each time (test/messages/claim-plan.test.ts). Local to the transaction
-- (set_config's is_local), so it works through PgBouncer's transaction
-- pooling and touches no other statement.
SELECT set_config('enable_sort', 'off', true), set_config('enable_bitmapscan', 'off', true),
       set_config('enable_hashjoin', 'off', true), set_config('enable_mergejoin', 'off', true);

-- name: PromoteDueMessages :execrows
-- Scheduled -> available: pending messages whose next_attempt_at has come
-- (a sendAt reached, a retry's backoff over) become available to the claim.
-- Run in the claim's transaction, just before ClaimMessages (see
-- src/delivery/claim.ts), so what it promotes is claimable at once.
--
-- Bounded: at most max_rows, the earliest due first, skipping rows another
-- pod is promoting or holds (FOR UPDATE SKIP LOCKED), so concurrent pods never
-- wait for each other and no claim pays for more than max_rows. With nothing
-- due it reads one entry of messages_scheduled_due_idx and stops.
--
-- Claim order is exact (created_at, id among due messages) whenever the
-- messages that became due since the last claim fit in max_rows. During a
-- larger burst (a million-message campaign whose sendAt just came), each claim
-- promotes max_rows more, earliest due first, so a newer message already
-- available can go out before an older one still waiting to be promoted; the
-- backlog catches up by max_rows per claim.
--
-- The due ids are chosen once, in a MATERIALIZED CTE, then joined by id.
-- Written as a subquery in FROM instead, a plan made from stale statistics
-- (ANALYZE saw about one row) may put it on the rescanned inner side of a
-- nested loop: every rescan skips the rows this statement already locked
-- and chooses max_rows more, so the statement takes far more than max_rows.
-- Every LIMIT ... SKIP LOCKED statement in sql/queries/ has this shape.
WITH due AS MATERIALIZED (
  SELECT id FROM messages
  WHERE status = 'pending' AND NOT available AND next_attempt_at <= now()
  ORDER BY next_attempt_at
  LIMIT sqlc.arg(max_rows)::integer
  FOR UPDATE SKIP LOCKED
)
UPDATE messages AS m
SET available = true
FROM due
WHERE m.id = due.id;

-- name: ClaimMessages :many
-- The oldest available messages (created_at, id), skipping rows another pod
-- holds: one walk of messages_available_claim_idx that reads only rows it
-- claims. Call it after PromoteDueMessages in one transaction. The
-- next_attempt_at test is always true for a row these statements made
-- available; it keeps "never before its time" even when something else (a
-- hand-written UPDATE, a pod of the previous version mid-deploy) leaves an
-- available row that is not due. With an execution_id (a job
-- run's execution fence, see BeginJobExecution) nothing is claimed once that
-- execution has been superseded. The ids are chosen once (a MATERIALIZED
-- CTE, see PromoteDueMessages), so no plan claims more than max_messages:
-- a batch never exceeds the job's batch size or the delivery tokens granted.
-- The rows come back in claim order (a nested loop over the chosen ids, see
-- PlanClaimInIndexOrder), which the sender keeps.
WITH due AS MATERIALIZED (
  SELECT id FROM messages
  WHERE status = 'pending' AND available AND next_attempt_at <= now()
    AND (sqlc.narg(execution_id)::uuid IS NULL
         OR EXISTS (SELECT 1 FROM jobs WHERE jobs.execution_id = sqlc.narg(execution_id)::uuid))
  ORDER BY created_at, id
  LIMIT sqlc.arg(max_messages)::integer
  FOR UPDATE SKIP LOCKED
)
UPDATE messages AS m
SET status = 'sending',
    available = false,
    attempts = m.attempts + 1,
    lease_until = now() + make_interval(secs => sqlc.arg(lease_seconds)::integer),
    locked_by = sqlc.arg(owner)::text,
    updated_at = now()
FROM due
WHERE m.id = due.id
RETURNING m.id, m.recipient, m.content, m.attempts, m.trace_parent;

-- name: RecordDeliveryOutcomes :many
-- All outcomes of one chunk and the attempts behind them, in one statement.
-- Each row says sent (with the provider's id), pending (retry after a delay),
-- failed, or untried (claimed but handed back: a paused or open breaker, a
-- failed breaker probe, a request aborted at the shutdown deadline; back to
-- pending, available again if due, the attempt the claim counted given back).
-- A send that lost its lease only records a success, which is the truth
-- whoever holds it now.
-- A retry waits out its backoff not available (even a delay of 0: the next
-- claim promotes it); sent and failed are never available.
--
-- outcomes is one JSON array, an object per message: {id, status,
-- external_message_id, error, retry_delay_ms} for the outcome, and
-- {attempt_outcome, started_at, duration_ms, http_status, attempt_error,
-- response_excerpt} for the webhook attempt it came from (attempt_outcome
-- null when none was made: the message went back untried); a missing or null
-- field is SQL null. One JSON text costs the pod far less to build than a
-- dozen parallel arrays; read as jsonb, each field is one lookup.
--
-- The UPDATE finds its rows by primary key: `m.id = ANY (ARRAY(...))` is an
-- index condition on messages_pkey whatever the table's size. Joined to o
-- alone, PostgreSQL's default costs hash o and read the whole table when it
-- is small (20,000 rows: every outcome write read all of them). Every
-- attempt made is
-- inserted into message_attempts, numbered after the message's last one,
-- also when the lease was lost (it happened). The attempt's number is read
-- from the statement's snapshot: only the lease holder settles a message, and
-- a late sender racing the new holder leaves its row out (ON CONFLICT DO
-- NOTHING) rather than failing the outcomes. A message deleted meanwhile gets
-- no attempt row (the history of a removed message goes with it;
-- message_attempts has no foreign key to check that).
WITH o AS MATERIALIZED (
  SELECT (e ->> 'id')::uuid AS id,
         e ->> 'status' AS status,
         e ->> 'external_message_id' AS external_message_id,
         e ->> 'error' AS error,
         (e ->> 'retry_delay_ms')::integer AS retry_delay_ms,
         e ->> 'attempt_outcome' AS attempt_outcome,
         (e ->> 'started_at')::timestamptz AS started_at,
         (e ->> 'duration_ms')::integer AS duration_ms,
         (e ->> 'http_status')::integer AS http_status,
         e ->> 'attempt_error' AS attempt_error,
         e ->> 'response_excerpt' AS response_excerpt
  FROM jsonb_array_elements(sqlc.arg(outcomes)::text::jsonb) AS e
), settled AS (
  UPDATE messages AS m
  SET status = CASE WHEN o.status = 'untried' THEN 'pending' ELSE o.status END,
      available = (o.status = 'untried' AND m.next_attempt_at <= now()),
      attempts = CASE WHEN o.status = 'untried' THEN m.attempts - 1 ELSE m.attempts END,
      external_message_id = coalesce(o.external_message_id, m.external_message_id),
      sent_at = CASE WHEN o.status = 'sent' THEN now() END,
      next_attempt_at = CASE WHEN o.status = 'pending'
                             THEN now() + make_interval(secs => o.retry_delay_ms / 1000.0)
                             ELSE m.next_attempt_at END,
      last_error = CASE WHEN o.status = 'untried' THEN m.last_error ELSE o.error END,
      lease_until = NULL,
      locked_by = NULL,
      updated_at = now()
  FROM o
  WHERE m.id = o.id AND m.id = ANY (ARRAY(SELECT id FROM o))
    AND ((m.status = 'sending' AND m.locked_by = sqlc.arg(owner)::text)
         OR (o.status = 'sent' AND m.status <> 'sent'))
  RETURNING m.id, m.status, m.sent_at
), recorded AS (
  INSERT INTO message_attempts (message_id, attempt, started_at, duration_ms, outcome, http_status, error,
                                response_excerpt)
  SELECT o.id,
         coalesce((SELECT max(x.attempt) FROM message_attempts AS x WHERE x.message_id = o.id), 0) + 1,
         o.started_at, o.duration_ms, o.attempt_outcome, o.http_status, o.attempt_error, o.response_excerpt
  FROM o
  -- A scalar subquery, not EXISTS: it stays one primary-key probe per row and
  -- is never turned into a join that reads the whole table.
  WHERE o.attempt_outcome IS NOT NULL AND (SELECT true FROM messages AS m WHERE m.id = o.id)
  ON CONFLICT (message_id, attempt) DO NOTHING
)
SELECT settled.id, settled.status, settled.sent_at FROM settled;


-- name: ListSentMessages :many
-- Newest sent first. The cursor is the last row's (sent_at, id); sent_at
-- travels as text so no microsecond is lost on the way through JavaScript.
SELECT id, recipient, content, status, attempts, external_message_id, last_error,
       send_at, created_at, sent_at, sent_at::text AS sent_at_cursor
FROM messages
WHERE status = 'sent'
  AND (sqlc.narg(after_sent_at)::text IS NULL
       OR (sent_at, id) < (sqlc.narg(after_sent_at)::text::timestamptz, sqlc.narg(after_id)::uuid))
ORDER BY sent_at DESC, id DESC
LIMIT sqlc.arg(max_rows)::integer;

-- name: ListMessages :many
-- Operators' listing, newest first, same keyset scheme; status and recipient
-- are optional filters (null: any). The driver sends parameters with the
-- statement, so each call is planned with the filters it has and uses
-- messages_listing_status_idx, messages_recipient_created_idx or
-- messages_created_idx. Not for status 'sending': see ListSendingMessages.
SELECT id, recipient, content, status, attempts, external_message_id, last_error,
       send_at, created_at, sent_at, created_at::text AS created_at_cursor
FROM messages
WHERE (sqlc.narg(status)::text IS NULL OR status = sqlc.narg(status)::text)
  AND (sqlc.narg(recipient)::text IS NULL OR recipient = sqlc.narg(recipient)::text)
  AND (sqlc.narg(after_created_at)::text IS NULL
       OR (created_at, id) < (sqlc.narg(after_created_at)::text::timestamptz, sqlc.narg(after_id)::uuid))
ORDER BY created_at DESC, id DESC
LIMIT sqlc.arg(max_rows)::integer;

-- name: ListSendingMessages :many
-- ListMessages for status 'sending': the messages in flight, which
-- messages_listing_status_idx leaves out (a claim writes no entry in it).
-- There are only as many as the pods have claimed and not yet settled, so all
-- of them are read on messages_sending_lease_idx (MATERIALIZED: read once,
-- whatever the filters) and the page is sorted from them. Left to the
-- planner, a listing of sending messages walked messages_created_idx
-- newest first whenever they were more than about 1 % of the table, reading
-- the whole pending backlog (newer than every message in flight) first:
-- 975,000 rows for a page behind a backlog of a million.
WITH in_flight AS MATERIALIZED (
  SELECT id, recipient, content, status, attempts, external_message_id, last_error,
         send_at, created_at, sent_at
  FROM messages
  WHERE status = 'sending'
)
SELECT id, recipient, content, status, attempts, external_message_id, last_error,
       send_at, created_at, sent_at, created_at::text AS created_at_cursor
FROM in_flight
WHERE (sqlc.narg(recipient)::text IS NULL OR recipient = sqlc.narg(recipient)::text)
  AND (sqlc.narg(after_created_at)::text IS NULL
       OR (created_at, id) < (sqlc.narg(after_created_at)::text::timestamptz, sqlc.narg(after_id)::uuid))
ORDER BY created_at DESC, id DESC
LIMIT sqlc.arg(max_rows)::integer;

-- name: CountPendingMessages :one
-- Backlog for the metrics gauge (cached 5 s per pod): exact up to
-- exact_up_to pending messages, then PostgreSQL's own estimate (the table's
-- row count times the share of 'pending' ANALYZE last saw), never below
-- exact_up_to. So a scrape reads at most exact_up_to index entries however
-- large the backlog: at a million pending, counting them all was a pass over
-- the table per scrape per pod. The estimate is as fresh as the last
-- (auto)ANALYZE; the hot tables are analysed often (see the autovacuum
-- migration).
WITH exact AS (
  SELECT count(*)::bigint AS total
  FROM (SELECT 1 FROM messages WHERE status = 'pending' LIMIT sqlc.arg(exact_up_to)::integer) AS capped
), estimate AS (
  SELECT (c.reltuples * s.most_common_freqs[array_position(s.most_common_vals::text::text[], 'pending')])::bigint
           AS total
  FROM pg_catalog.pg_class AS c, pg_catalog.pg_stats AS s
  WHERE c.oid = 'messages'::regclass
    AND s.schemaname = current_schema() AND s.tablename = 'messages' AND s.attname = 'status'
)
SELECT CASE WHEN exact.total < sqlc.arg(exact_up_to)::integer THEN exact.total
            ELSE greatest(exact.total, coalesce((SELECT total FROM estimate), 0)) END::bigint AS total
FROM exact;

-- name: OldestDueMessageAge :one
-- For the alerting gauge job_manager_oldest_due_pending_message_age_seconds
-- (cached 5 s): how long the longest-waiting due message has been due
-- (next_attempt_at is when it became due: intake, send time, end of backoff).
-- Two index probes of one entry each, whatever the table's size: the next
-- message the claim takes (the head of messages_available_claim_idx) and the
-- earliest due message not yet promoted (the head of
-- messages_scheduled_due_idx, which stays due but unpromoted while nothing
-- claims). 0 when nothing is due.
SELECT greatest(
  (SELECT extract(epoch FROM now() - next_attempt_at) FROM messages
   WHERE status = 'pending' AND available ORDER BY created_at, id LIMIT 1),
  (SELECT extract(epoch FROM now() - next_attempt_at) FROM messages
   WHERE status = 'pending' AND NOT available AND next_attempt_at <= now() ORDER BY next_attempt_at LIMIT 1),
  0)::float8 AS age_seconds;

-- name: CancelMessage :one
-- pending or failed -> cancelled. A message a pod has claimed is 'sending'
-- (the claim holds the row lock until it commits, then this re-reads it), so
-- a cancel racing a claim is decided by the database: exactly one wins.
UPDATE messages
SET status = 'cancelled', available = false, updated_at = now()
WHERE id = sqlc.arg(id) AND status IN ('pending', 'failed')
RETURNING id, recipient, content, status, attempts, external_message_id, last_error,
          send_at, created_at, sent_at;

-- name: RetryMessage :one
-- failed or cancelled -> pending with a fresh attempt budget (attempts 0),
-- due now (available at once), or at its send time if that is still ahead
-- (promoted then).
UPDATE messages
SET status = 'pending', attempts = 0, next_attempt_at = greatest(now(), send_at),
    available = coalesce(send_at <= now(), true), updated_at = now()
WHERE id = sqlc.arg(id) AND status IN ('failed', 'cancelled')
RETURNING id, recipient, content, status, attempts, external_message_id, last_error,
          send_at, created_at, sent_at;

-- name: RetryFailedMessages :one
-- One bounded batch of POST /messages/retry-failed: at most max_rows failed
-- messages that failed in [since, until) back to pending, oldest failure
-- first. Rows locked by someone else (a concurrent cancel) are skipped; the
-- caller repeats until a batch comes back short, so no statement ever locks
-- more than max_rows rows (chosen once, see PromoteDueMessages). The chosen
-- rows are found by primary key (see RecordDeliveryOutcomes).
WITH batch AS MATERIALIZED (
  SELECT id FROM messages
  WHERE status = 'failed'
    AND updated_at >= coalesce(sqlc.narg(since)::timestamptz, '-infinity')
    AND updated_at < coalesce(sqlc.narg(until)::timestamptz, 'infinity')
  ORDER BY updated_at, id
  LIMIT sqlc.arg(max_rows)::integer
  FOR UPDATE SKIP LOCKED
), retried AS (
  UPDATE messages AS m
  SET status = 'pending', attempts = 0, next_attempt_at = greatest(now(), m.send_at),
      available = coalesce(m.send_at <= now(), true), updated_at = now()
  WHERE m.id = ANY (ARRAY(SELECT id FROM batch))
  RETURNING m.id
)
SELECT count(*)::integer AS retried FROM retried;
