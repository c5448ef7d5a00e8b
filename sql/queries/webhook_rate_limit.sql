-- The outbound rate limit and the shared pause (one row; see the migration).

-- name: TakeDeliveryTokens :one
-- Token bucket on the database clock: refills at rate_per_second up to
-- capacity, grants up to `wanted` whole tokens unless deliveries are paused.
-- One statement: the row lock lasts only as long as it does.
WITH state AS (
  SELECT l.paused_until,
         clock_timestamp() AS at,
         least(sqlc.arg(capacity)::float8,
               l.tokens + sqlc.arg(rate_per_second)::float8
                          * greatest(0, extract(epoch FROM clock_timestamp() - l.refilled_at))::float8) AS available
  FROM webhook_rate_limit AS l
  WHERE l.id = 1
  FOR UPDATE
), decision AS (
  SELECT state.*,
         CASE WHEN state.paused_until > state.at THEN 0
              ELSE least(sqlc.arg(wanted)::integer, floor(state.available)::integer) END AS granted
  FROM state
)
UPDATE webhook_rate_limit AS l
SET tokens = d.available - d.granted, refilled_at = d.at
FROM decision AS d
WHERE l.id = 1
RETURNING d.granted::integer AS granted,
          (d.available - d.granted)::float8 AS tokens_left,
          greatest(0, ceil(extract(epoch FROM d.paused_until - d.at) * 1000))::integer AS paused_ms;

-- name: GetDeliveryPause :one
-- Without a rate limit only the pause matters: a plain read, no lock.
SELECT greatest(0, ceil(extract(epoch FROM paused_until - clock_timestamp()) * 1000))::integer AS paused_ms
FROM webhook_rate_limit
WHERE id = 1;

-- name: PauseDeliveries :one
-- A 429 or 503 with Retry-After: every pod's deliveries wait until then. A
-- later pause that is already set is kept.
UPDATE webhook_rate_limit
SET paused_until = greatest(paused_until, clock_timestamp() + make_interval(secs => sqlc.arg(pause_ms)::integer / 1000.0))
WHERE id = 1
RETURNING greatest(0, ceil(extract(epoch FROM paused_until - clock_timestamp()) * 1000))::integer AS paused_ms;
