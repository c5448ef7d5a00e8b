-- migrate:up

-- Issue 12: send later, cancel and retry, the operators' search, idempotent
-- intake and one outbound rate limit shared by every pod.

-- Send later. send_at is what the client asked for (null: at once);
-- next_attempt_at, the one time the claim compares, never comes before it, so
-- the claim stays a single comparison on one index.
ALTER TABLE messages ADD COLUMN send_at timestamptz;
ALTER TABLE messages ADD CONSTRAINT messages_not_due_before_send_at
  CHECK (send_at IS NULL OR next_attempt_at >= send_at);

-- Cancelled: an operator took the message out of the queue before it was sent.
ALTER TABLE messages DROP CONSTRAINT messages_status_valid;
ALTER TABLE messages ADD CONSTRAINT messages_status_valid
  CHECK (status IN ('pending', 'sending', 'sent', 'failed', 'cancelled'));

-- Claim, when most pending messages are not due yet (a big campaign scheduled
-- for tomorrow): the planner walks the due ones by time instead of skipping
-- the scheduled ones in created_at order. With most of the backlog due it keeps
-- using messages_pending_claim_idx (created_at, id) as before.
CREATE INDEX messages_pending_due_idx ON messages (next_attempt_at) WHERE status = 'pending';
-- POST /messages/retry-failed: failed messages by when they failed. Nothing
-- changes a failed row except cancel and retry, so its updated_at is that time.
CREATE INDEX messages_failed_at_idx ON messages (updated_at, id) WHERE status = 'failed';
-- GET /messages?to=: one recipient's messages, newest first.
CREATE INDEX messages_recipient_created_idx ON messages (recipient, created_at DESC, id DESC);
-- GET /messages without a status: every message, newest first.
CREATE INDEX messages_created_idx ON messages (created_at DESC, id DESC);

-- Idempotent intake: one row per (API key, Idempotency-Key), written in the
-- same transaction as the messages it created, holding what was answered.
CREATE TABLE idempotency_keys (
  -- sha256 of the API key that sent it (hex); '' when the API is open.
  scope           text        NOT NULL,
  idempotency_key text        NOT NULL,
  -- sha256 of method, path and the canonical JSON body (hex).
  request_hash    text        NOT NULL,
  response_status integer     NOT NULL,
  response_body   jsonb       NOT NULL,
  created_at      timestamptz NOT NULL DEFAULT now(),

  CONSTRAINT idempotency_keys_pkey PRIMARY KEY (scope, idempotency_key),
  CONSTRAINT idempotency_keys_key_length CHECK (length(idempotency_key) BETWEEN 1 AND 255),
  CONSTRAINT idempotency_keys_status_range CHECK (response_status BETWEEN 200 AND 599)
);
-- The purge of keys older than 24 h.
CREATE INDEX idempotency_keys_created_idx ON idempotency_keys (created_at);

-- The outbound rate limit and pause, shared by every pod: a token bucket
-- (WEBHOOK_RATE_LIMIT_PER_SECOND) and the time until which a 429 or 503 with
-- Retry-After paused every delivery. One row, touched by one short statement
-- per claimed chunk; no lock on it is ever held across an HTTP request.
CREATE TABLE webhook_rate_limit (
  id           integer          PRIMARY KEY DEFAULT 1,
  tokens       double precision NOT NULL DEFAULT 0,
  refilled_at  timestamptz      NOT NULL DEFAULT now(),
  paused_until timestamptz      NOT NULL DEFAULT '1970-01-01 00:00:00+00',

  CONSTRAINT webhook_rate_limit_single_row CHECK (id = 1),
  CONSTRAINT webhook_rate_limit_tokens_non_negative CHECK (tokens >= 0)
);
INSERT INTO webhook_rate_limit DEFAULT VALUES;
