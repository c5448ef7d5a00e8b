-- The maintenance loop (src/maintenance/): one pod at a time, bounded batches.

-- name: TakeMaintenanceLease :one
-- Takes (or, for its holder, renews) the maintenance turn for lease_ms. No
-- row: another pod holds an unexpired lease. One short statement: it works
-- through PgBouncer's transaction pooling, unlike a session advisory lock.
UPDATE maintenance_lease
SET lease_until = now() + make_interval(secs => sqlc.arg(lease_ms)::integer / 1000.0),
    locked_by = sqlc.arg(owner)::text
WHERE task = 'maintenance'
  AND (lease_until <= now() OR locked_by = sqlc.arg(owner)::text)
RETURNING lease_until;

-- name: ReleaseMaintenanceLease :exec
-- The pass is over: the next pod to tick may take the turn at once.
UPDATE maintenance_lease
SET lease_until = '-infinity', locked_by = NULL, finished_at = now()
WHERE task = 'maintenance' AND locked_by = sqlc.arg(owner)::text;

-- name: DeleteExpiredMessages :one
-- One bounded batch of message retention: at most max_rows messages in a
-- terminal status (sent, failed, cancelled) whose last change is older than
-- retention_days, found on messages_retention_idx. Their attempts go with them
-- (the messages_delete_attempts trigger, one statement for the batch). Pending and sending messages are never touched, however
-- old. FOR UPDATE re-checks status and updated_at on the newest row version, so
-- a message retried or cancelled meanwhile is not removed; SKIP LOCKED passes
-- over rows a retry, cancel or settle holds, so the pass never waits on them and
-- they never wait long on it. MATERIALIZED: chosen once, never rescanned by a
-- nested loop into more than max_rows; then found by primary key (see
-- RecordDeliveryOutcomes in messages.sql).
WITH expired AS MATERIALIZED (
  SELECT id FROM messages
  WHERE status IN ('sent', 'failed', 'cancelled')
    AND updated_at < now() - make_interval(days => sqlc.arg(retention_days)::integer)
  ORDER BY updated_at
  LIMIT sqlc.arg(max_rows)::integer
  FOR UPDATE SKIP LOCKED
), deleted AS (
  DELETE FROM messages AS m
  WHERE m.id = ANY (ARRAY(SELECT id FROM expired))
  RETURNING 1
)
SELECT count(*)::integer AS deleted FROM deleted;
