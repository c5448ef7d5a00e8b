-- Messages: intake, the sender's claims and outcomes, and the read side.

-- name: InsertMessage :one
INSERT INTO messages (recipient, content)
VALUES ($1, $2)
RETURNING id, recipient, content, status, attempts, external_message_id, last_error,
          created_at, sent_at;

-- name: InsertMessages :many
-- A whole batch in one statement; WITH ORDINALITY keeps the request's order.
INSERT INTO messages (recipient, content)
SELECT m.recipient, m.content
FROM ROWS FROM (unnest(sqlc.arg(recipients)::text[]), unnest(sqlc.arg(contents)::text[]))
     WITH ORDINALITY AS m(recipient, content, position)
ORDER BY m.position
RETURNING id, recipient, content, status, attempts, external_message_id, last_error,
          created_at, sent_at;

-- name: GetMessage :one
SELECT id, recipient, content, status, attempts, external_message_id, last_error,
       created_at, sent_at
FROM messages
WHERE id = $1;

-- name: ReleaseExpiredMessageLeases :many
-- Sends abandoned by a crashed pod become pending again, keeping their id
-- (the Idempotency-Key) and their attempt count.
UPDATE messages
SET status = 'pending', lease_until = NULL, locked_by = NULL, updated_at = now()
WHERE status = 'sending' AND lease_until < now()
RETURNING id;

-- name: ClaimMessages :many
-- The oldest due pending messages, skipping rows another pod holds. With an
-- execution_id (a job run's execution fence, see BeginJobExecution) nothing
-- is claimed once that execution has been superseded.
UPDATE messages AS m
SET status = 'sending',
    attempts = m.attempts + 1,
    lease_until = now() + make_interval(secs => sqlc.arg(lease_seconds)::integer),
    locked_by = sqlc.arg(owner)::text,
    updated_at = now()
FROM (
  SELECT id FROM messages
  WHERE status = 'pending' AND next_attempt_at <= now()
    AND (sqlc.narg(execution_id)::uuid IS NULL
         OR EXISTS (SELECT 1 FROM jobs WHERE jobs.execution_id = sqlc.narg(execution_id)::uuid))
  ORDER BY created_at, id
  LIMIT sqlc.arg(max_messages)::integer
  FOR UPDATE SKIP LOCKED
) AS due
WHERE m.id = due.id
RETURNING m.id, m.recipient, m.content, m.attempts, m.created_at;

-- name: RecordDeliveryOutcomes :many
-- All outcomes of one batch in one statement. Each row says sent (with the
-- provider's id), pending (retry after a delay) or failed; an empty string
-- stands for "none" in the id and error arrays. A send that lost
-- its lease only records a success, which is the truth whoever holds it now.
UPDATE messages AS m
SET status = o.status,
    external_message_id = coalesce(nullif(o.external_message_id, ''), m.external_message_id),
    sent_at = CASE WHEN o.status = 'sent' THEN now() END,
    next_attempt_at = CASE WHEN o.status = 'pending'
                           THEN now() + make_interval(secs => o.retry_delay_ms / 1000.0)
                           ELSE m.next_attempt_at END,
    last_error = nullif(o.error, ''),
    lease_until = NULL,
    locked_by = NULL,
    updated_at = now()
FROM ROWS FROM (
  unnest(sqlc.arg(ids)::uuid[]),
  unnest(sqlc.arg(statuses)::text[]),
  unnest(sqlc.arg(external_message_ids)::text[]),
  unnest(sqlc.arg(errors)::text[]),
  unnest(sqlc.arg(retry_delays_ms)::integer[])
) AS o(id, status, external_message_id, error, retry_delay_ms)
WHERE m.id = o.id
  AND ((m.status = 'sending' AND m.locked_by = sqlc.arg(owner)::text)
       OR (o.status = 'sent' AND m.status <> 'sent'))
RETURNING m.id, m.status, m.sent_at;

-- name: HandBackMessages :many
-- Messages this owner claimed but did not really try (shutdown aborted the
-- request, the circuit breaker opened before their turn, or a breaker probe
-- failed): pending again at once, same id, the attempt the claim counted
-- undone, so an outage or a restart costs them nothing of their retry budget.
UPDATE messages
SET status = 'pending',
    attempts = greatest(attempts - 1, 0),
    next_attempt_at = now(),
    lease_until = NULL,
    locked_by = NULL,
    updated_at = now()
WHERE id = ANY(sqlc.arg(ids)::uuid[])
  AND status = 'sending' AND locked_by = sqlc.arg(owner)::text
RETURNING id;

-- name: ListSentMessages :many
-- Newest sent first. The cursor is the last row's (sent_at, id); sent_at
-- travels as text so no microsecond is lost on the way through JavaScript.
SELECT id, recipient, content, status, attempts, external_message_id, last_error,
       created_at, sent_at, sent_at::text AS sent_at_cursor
FROM messages
WHERE status = 'sent'
  AND (sqlc.narg(after_sent_at)::text IS NULL
       OR (sent_at, id) < (sqlc.narg(after_sent_at)::text::timestamptz, sqlc.narg(after_id)::uuid))
ORDER BY sent_at DESC, id DESC
LIMIT sqlc.arg(max_rows)::integer;

-- name: ListMessagesByStatus :many
-- Operators' listing of one status, newest first, same keyset scheme.
SELECT id, recipient, content, status, attempts, external_message_id, last_error,
       created_at, sent_at, created_at::text AS created_at_cursor
FROM messages
WHERE status = sqlc.arg(status)
  AND (sqlc.narg(after_created_at)::text IS NULL
       OR (created_at, id) < (sqlc.narg(after_created_at)::text::timestamptz, sqlc.narg(after_id)::uuid))
ORDER BY created_at DESC, id DESC
LIMIT sqlc.arg(max_rows)::integer;

-- name: CountPendingMessages :one
-- Backlog for the metrics gauge; served by the partial pending index.
SELECT count(*)::bigint AS total FROM messages WHERE status = 'pending';
