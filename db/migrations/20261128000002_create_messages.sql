-- migrate:up

CREATE TABLE messages (
  id                  uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
  recipient           text        NOT NULL,
  content             text        NOT NULL,
  status              text        NOT NULL DEFAULT 'pending',
  attempts            integer     NOT NULL DEFAULT 0,
  next_attempt_at     timestamptz NOT NULL DEFAULT now(),
  lease_until         timestamptz,
  locked_by           text,
  external_message_id text,
  last_error          text,
  -- clock_timestamp(), not now(): rows of one batch insert keep their order.
  created_at          timestamptz NOT NULL DEFAULT clock_timestamp(),
  sent_at             timestamptz,
  updated_at          timestamptz NOT NULL DEFAULT now(),

  CONSTRAINT messages_recipient_e164 CHECK (recipient ~ '^\+[1-9][0-9]{7,14}$'),
  -- The configurable limit (MESSAGE_MAX_LENGTH) is enforced by the API; this is the floor.
  CONSTRAINT messages_content_not_empty CHECK (char_length(content) >= 1),
  CONSTRAINT messages_status_valid CHECK (status IN ('pending', 'sending', 'sent', 'failed')),
  CONSTRAINT messages_attempts_non_negative CHECK (attempts >= 0),
  CONSTRAINT messages_lease_iff_sending CHECK (
    num_nonnulls(lease_until, locked_by) = CASE WHEN status = 'sending' THEN 2 ELSE 0 END
  ),
  CONSTRAINT messages_sent_has_receipt CHECK (
    (status = 'sent') = (sent_at IS NOT NULL AND external_message_id IS NOT NULL)
  )
);

-- Claim order: the oldest pending message first.
CREATE INDEX messages_pending_claim_idx ON messages (created_at, id) WHERE status = 'pending';
-- Recovery of sends abandoned by a crashed pod.
CREATE INDEX messages_sending_lease_idx ON messages (lease_until) WHERE status = 'sending';
-- GET /messages/sent: newest first, keyset pagination.
CREATE INDEX messages_sent_keyset_idx ON messages (sent_at DESC, id DESC) WHERE status = 'sent';
-- GET /messages?status=: operators' listing, newest first.
CREATE INDEX messages_status_created_idx ON messages (status, created_at DESC, id DESC);
