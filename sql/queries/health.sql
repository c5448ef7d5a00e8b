-- name: Ping :one
-- The readiness probe's round trip, and whether this session can write: a
-- server in recovery (a standby, also one just being promoted) or a read-only
-- session (default_transaction_read_only, a demoted primary) cannot take a
-- message or a claim.
SELECT pg_is_in_recovery()::boolean AS in_recovery,
       current_setting('transaction_read_only') = 'on' AS read_only;
