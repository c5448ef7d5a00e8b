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
-- retention_days. Each status is read on its own partial index in the order of
-- that change: sent ones on messages_sent_keyset_idx (a sent message's sent_at
-- is its last change), failed ones on messages_failed_at_idx, cancelled ones
-- on messages_cancelled_at_idx (FOR UPDATE is not allowed in a UNION branch,
-- so each is a CTE of its own); sent first, then failed, then cancelled, each
-- read only when the ones before it came back short of max_rows. So a
-- settle pays no index entry for retention. Their attempts go with them (the
-- messages_delete_attempts trigger, one statement for the batch). Pending and
-- sending messages are never touched, however old. FOR UPDATE re-checks the
-- status and the time on the newest row version, so a message retried or
-- cancelled meanwhile is not removed; SKIP LOCKED passes over rows a retry,
-- cancel or settle holds, so the pass never waits on them and they never wait
-- long on it. MATERIALIZED: chosen once, never rescanned by a nested loop into
-- more than max_rows; then found by primary key (see RecordDeliveryOutcomes in
-- messages.sql).
WITH sent AS MATERIALIZED (
  SELECT id FROM messages
  WHERE status = 'sent' AND sent_at < now() - make_interval(days => sqlc.arg(retention_days)::integer)
  ORDER BY sent_at
  LIMIT sqlc.arg(max_rows)::integer
  FOR UPDATE SKIP LOCKED
), failed AS MATERIALIZED (
  SELECT id FROM messages
  WHERE status = 'failed' AND updated_at < now() - make_interval(days => sqlc.arg(retention_days)::integer)
  ORDER BY updated_at
  LIMIT sqlc.arg(max_rows)::integer
  FOR UPDATE SKIP LOCKED
), cancelled AS MATERIALIZED (
  SELECT id FROM messages
  WHERE status = 'cancelled' AND updated_at < now() - make_interval(days => sqlc.arg(retention_days)::integer)
  ORDER BY updated_at
  LIMIT sqlc.arg(max_rows)::integer
  FOR UPDATE SKIP LOCKED
), expired AS MATERIALIZED (
  -- A CTE runs only as far as it is read: failed and cancelled only when sent came back short.
  SELECT id FROM sent
  UNION ALL SELECT id FROM failed
  UNION ALL SELECT id FROM cancelled
  LIMIT sqlc.arg(max_rows)::integer
), deleted AS (
  DELETE FROM messages AS m
  WHERE m.id = ANY (ARRAY(SELECT id FROM expired))
  RETURNING 1
)
SELECT count(*)::integer AS deleted FROM deleted;
