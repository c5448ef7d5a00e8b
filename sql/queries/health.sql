-- name: Ping :one
-- The readiness probe's round trip.
SELECT 1::integer AS ok;
