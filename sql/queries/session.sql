-- name: ListenSessionProbe :exec
-- The start-up check that a connection is a real session: LISTEN here, NOTIFY
-- from the pool, and wait for it. Through a transaction pooler the LISTEN
-- stays behind on a server connection that is not this client's, and the
-- notification never comes.
LISTEN job_manager_session_probe;

-- name: NotifySessionProbe :exec
SELECT pg_notify('job_manager_session_probe', sqlc.arg(token)::text);


-- name: UnlistenSessionProbe :exec
-- Through a pooler this most likely reaches the server connection the LISTEN
-- was left on (PgBouncer reuses the last one released), so the check leaves
-- nothing behind there.
UNLISTEN job_manager_session_probe;
