-- Idempotent intake (the Idempotency-Key request header).

-- name: LockIdempotencyKey :one
-- Held until the end of the intake transaction. false: another request with
-- this key is being processed right now (on any pod).
SELECT pg_try_advisory_xact_lock(
  hashtextextended('idempotency:' || sqlc.arg(scope)::text || ':' || sqlc.arg(idempotency_key)::text, 0)
) AS locked;

-- name: GetIdempotencyKey :one
-- The stored answer to an earlier request with this key, if it is younger than 24 h.
SELECT request_hash, response_status, response_body
FROM idempotency_keys
WHERE scope = sqlc.arg(scope) AND idempotency_key = sqlc.arg(idempotency_key)
  AND created_at > now() - interval '24 hours';

-- name: SaveIdempotencyKey :one
-- Written in the transaction that stored the messages. An expired row with
-- the same key (not purged yet) is replaced; a live one is not, and then no
-- row comes back (the caller rolls back).
INSERT INTO idempotency_keys (scope, idempotency_key, request_hash, response_status, response_body)
VALUES (sqlc.arg(scope), sqlc.arg(idempotency_key), sqlc.arg(request_hash), sqlc.arg(response_status),
        sqlc.arg(response_body)::json)
ON CONFLICT (scope, idempotency_key) DO UPDATE
SET request_hash = excluded.request_hash,
    response_status = excluded.response_status,
    response_body = excluded.response_body,
    created_at = now()
WHERE idempotency_keys.created_at <= now() - interval '24 hours'
RETURNING idempotency_key;

-- name: PurgeExpiredIdempotencyKeys :one
-- One bounded batch of the purge: at most max_rows keys older than 24 h,
-- chosen once (MATERIALIZED): as a subquery joined into the DELETE, a plan
-- from stale statistics may rescan it and delete max_rows more per rescan.
WITH expired AS MATERIALIZED (
  SELECT scope, idempotency_key FROM idempotency_keys
  WHERE created_at <= now() - interval '24 hours'
  ORDER BY created_at
  LIMIT sqlc.arg(max_rows)::integer
  FOR UPDATE SKIP LOCKED
), deleted AS (
  DELETE FROM idempotency_keys AS k
  USING expired
  WHERE k.scope = expired.scope AND k.idempotency_key = expired.idempotency_key
  RETURNING 1
)
SELECT count(*)::integer AS deleted FROM deleted;
