-- A message's delivery history (message_attempts), written by
-- RecordDeliveryOutcomes in messages.sql.

-- name: ListMessageAttempts :many
-- One page of a message's attempts, oldest first: keyset pagination on the
-- primary key (message_id, attempt), so a deep page costs what the first does.
SELECT attempt, started_at, duration_ms, outcome, http_status, error, response_excerpt
FROM message_attempts
WHERE message_id = sqlc.arg(message_id)::uuid AND attempt > sqlc.arg(after_attempt)::integer
ORDER BY attempt
LIMIT sqlc.arg(max_rows)::integer;

-- name: MessageExists :one
-- Whether the message exists: tells an unknown message (404) from one with no attempts yet.
SELECT EXISTS (SELECT 1 FROM messages WHERE id = sqlc.arg(id)::uuid) AS found;
