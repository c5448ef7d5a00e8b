-- migrate:up
SET lock_timeout = '5s';

-- Issue 19: the delivery history. One row per webhook attempt that was made
-- (delivered, retry, failed, or aborted at the shutdown deadline), written by
-- RecordDeliveryOutcomes in the same statement as the message's outcome.
--
-- attempt counts this message's history from 1; it is not messages.attempts,
-- which a retry resets and a failed breaker probe or a shutdown abort does not
-- count. The primary key (message_id, attempt) is the keyset of
-- GET /messages/{id}/attempts and the index the foreign key's cascade uses: a
-- message removed (by retention or by hand) takes its attempts with it.
CREATE TABLE message_attempts (
  message_id       uuid        NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
  attempt          integer     NOT NULL,
  started_at       timestamptz NOT NULL,
  duration_ms      integer     NOT NULL,
  outcome          text        NOT NULL,
  http_status      integer,
  -- Short, secrets redacted: timeout, connection refused, HTTP 503, ...
  error            text,
  -- The first 1,024 characters of the response body, secrets redacted; null without a body.
  response_excerpt text,

  PRIMARY KEY (message_id, attempt),
  CONSTRAINT message_attempts_attempt_positive CHECK (attempt >= 1),
  CONSTRAINT message_attempts_duration_non_negative CHECK (duration_ms >= 0),
  CONSTRAINT message_attempts_outcome_valid CHECK (outcome IN ('delivered', 'retry', 'failed', 'aborted')),
  CONSTRAINT message_attempts_excerpt_bounded CHECK (char_length(response_excerpt) <= 1024)
);
