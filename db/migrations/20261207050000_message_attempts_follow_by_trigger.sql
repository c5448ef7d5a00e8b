-- migrate:up
SET lock_timeout = '5s';

-- Issue 20: the delivery history without a foreign key check per attempt.
--
-- message_attempts(message_id) referenced messages(id) ON DELETE CASCADE.
-- The reference cost every attempt row an RI trigger: a queued after-trigger
-- event and a SELECT … FOR KEY SHARE of the message, on top of the probe
-- RecordDeliveryOutcomes already makes to skip a deleted message. The only
-- writer of attempts is that statement, which inserts an attempt only for a
-- message its snapshot sees. What the reference still caught: a DELETE by
-- hand of a message whose outcome is being written at that very moment,
-- committed after the delete trigger ran; that message's attempt row now
-- stays behind, unseen (GET /messages/{id}/attempts answers 404 for a
-- message that does not exist) and harmless. Retention does not race a
-- settle: it removes terminal messages unchanged for days, and a message
-- being settled is 'sending' (or was changed within its lease).
--
-- What the cascade did stays: a message removed by any DELETE (the retention
-- pass, or by hand) takes its attempts with it, through one statement-level
-- trigger that deletes the attempts of all the statement's removed messages
-- at once (a transition table, no per-row trigger), and TRUNCATE messages
-- empties message_attempts too. Nothing runs on insert or update.
ALTER TABLE message_attempts DROP CONSTRAINT message_attempts_message_id_fkey;

CREATE FUNCTION message_attempts_follow_deleted_messages() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  DELETE FROM message_attempts AS a USING removed_messages AS r WHERE a.message_id = r.id;
  RETURN NULL;
END
$$;

CREATE FUNCTION message_attempts_follow_truncated_messages() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  TRUNCATE message_attempts;
  RETURN NULL;
END
$$;

CREATE TRIGGER messages_delete_attempts
  AFTER DELETE ON messages
  REFERENCING OLD TABLE AS removed_messages
  FOR EACH STATEMENT EXECUTE FUNCTION message_attempts_follow_deleted_messages();

CREATE TRIGGER messages_truncate_attempts
  AFTER TRUNCATE ON messages
  FOR EACH STATEMENT EXECUTE FUNCTION message_attempts_follow_truncated_messages();
