import type { components } from '../api/openapi.ts';
import type { Config } from '../config/config.ts';
import type { Pool, PoolClient } from '../db/pool.ts';
import type { MessageRow } from '../db/rows.ts';
import { listMessageAttempts, messageExists } from '../db/sqlc/message_attempts_sql.ts';
import * as sql from '../db/sqlc/messages_sql.ts';
import { ConflictError, NotFoundError, ValidationError } from '../errors.ts';
import {
  decodeAttemptCursor,
  decodeCursor,
  encodeAttemptCursor,
  encodeCursor,
  keysetPage,
  uuidPattern,
} from './cursor.ts';
import { type MessageInput, parseRfc3339, validateMessage } from './message-validation.ts';

/** A message as the API shows it: openapi.yaml's `Message` schema. */
export type MessageView = components['schemas']['Message'];

/** One page of messages with the cursor of the next: openapi.yaml's `MessagePage` schema. */
export type MessagePage = components['schemas']['MessagePage'];

/** One page of a message's delivery attempts: openapi.yaml's `AttemptPage` schema. */
export type AttemptPage = components['schemas']['AttemptPage'];

/** A message status: openapi.yaml's `MessageStatus` schema. */
export type MessageStatus = components['schemas']['MessageStatus'];

export const messageStatuses = [
  'pending',
  'sending',
  'sent',
  'failed',
  'cancelled',
] as const satisfies readonly MessageStatus[];

/** Where intake writes: the pool, or the connection of an open transaction (idempotent intake). */
export type Queryable = Pool | PoolClient;

/** Filters of the operators' listing; each is optional. */
export interface MessageFilter {
  status?: MessageStatus;
  /** Exact E.164 recipient. */
  to?: string;
}

/** The backlog gauge counts pending messages exactly up to this many, then reads the planner's estimate. */
export const PENDING_EXACT_UP_TO = 10_000;

/** Failed messages per statement of `retryFailed`, so no statement locks more rows than this. */
export const RETRY_FAILED_BATCH_ROWS = 1000;

/** The settings intake reads; `LiveSettings` is one, so MESSAGE_MAX_LENGTH applies live. */
export interface IntakeSettings {
  readonly current: Pick<Config, 'messageMaxLength'>;
}

export class MessageService {
  readonly #pool: Pool;
  readonly #settings: IntakeSettings;

  /** @param settings read on every intake: MESSAGE_MAX_LENGTH (characters of `content`) */
  constructor(pool: Pool, settings: IntakeSettings) {
    this.#pool = pool;
    this.#settings = settings;
  }

  /**
   * Validates and stores one message (pending; due at `sendAt`, or at once).
   * @param db where to write; an idempotent intake passes its transaction
   * @param traceParent the W3C `traceparent` its delivery attempts continue (the intake request's span)
   * @throws ValidationError (400) naming the field
   */
  async create(input: MessageInput, db: Queryable = this.#pool, traceParent?: string): Promise<MessageView> {
    const message = validateMessage(input, this.#settings.current.messageMaxLength);
    const row = await sql.insertMessage(db, {
      recipient: message.to,
      content: message.content,
      sendAt: message.sendAt,
      traceParent: traceParent ?? null,
    });
    if (!row) throw new Error('insert returned no row');
    return toMessageView(row);
  }

  /**
   * All or nothing: every message is validated before one insert statement stores them all.
   * Every message of the batch continues `traceParent` (see create).
   */
  async createBatch(inputs: MessageInput[], db: Queryable = this.#pool, traceParent?: string): Promise<MessageView[]> {
    const maxLength = this.#settings.current.messageMaxLength;
    const messages = inputs.map((input, index) => validateMessage(input, maxLength, `messages[${index}].`));
    const rows = await sql.insertMessages(db, {
      recipients: messages.map((message) => message.to),
      contents: messages.map((message) => message.content),
      sendAts: messages.map((message) => message.sendAt?.toISOString() ?? ''),
      traceParent: traceParent ?? null,
    });
    return rows.map(toMessageView);
  }

  /**
   * pending or failed -> cancelled; a cancelled message is answered unchanged.
   * @throws NotFoundError (404) unknown id; ConflictError (409 `not_cancellable`) sending or sent
   */
  async cancel(id: string): Promise<MessageView> {
    const cancelled = uuidPattern.test(id) ? await sql.cancelMessage(this.#pool, { id }) : null;
    if (cancelled) return toMessageView(cancelled);
    const current = await this.get(id);
    if (current.status === 'cancelled') return current;
    throw new ConflictError(
      'not_cancellable',
      `message "${id}" is ${current.status}; only pending or failed messages can be cancelled`,
    );
  }

  /**
   * failed or cancelled -> pending with a fresh attempt budget, due now (or at
   * its sendAt if that is still ahead).
   * @throws NotFoundError (404) unknown id; ConflictError (409 `not_retryable`) any other status
   */
  async retry(id: string): Promise<MessageView> {
    const retried = uuidPattern.test(id) ? await sql.retryMessage(this.#pool, { id }) : null;
    if (retried) return toMessageView(retried);
    const current = await this.get(id);
    throw new ConflictError(
      'not_retryable',
      `message "${id}" is ${current.status}; only failed or cancelled messages can be retried`,
    );
  }

  /**
   * Every failed message that failed in [since, until) back to pending with a
   * fresh attempt budget, in statements of at most RETRY_FAILED_BATCH_ROWS rows.
   * @param range RFC 3339 bounds, each optional
   * @returns how many messages went back to pending
   * @throws ValidationError (400) unreadable bound or since after until
   */
  async retryFailed(range: { since?: string; until?: string } = {}): Promise<number> {
    const since = boundOf(range.since, 'since');
    const until = boundOf(range.until, 'until');
    if (since && until && since > until) {
      throw new ValidationError('invalid_range', 'since must not be after until');
    }
    let total = 0;
    for (;;) {
      const batch = await sql.retryFailedMessages(this.#pool, { since, until, maxRows: RETRY_FAILED_BATCH_ROWS });
      const retried = batch?.retried ?? 0;
      total += retried;
      if (retried < RETRY_FAILED_BATCH_ROWS) return total;
    }
  }

  /**
   * Messages waiting to be sent, for the `job_manager_messages_pending` gauge:
   * exact up to PENDING_EXACT_UP_TO, above that PostgreSQL's estimate.
   */
  async countPending(): Promise<number> {
    return Number((await sql.countPendingMessages(this.#pool, { exactUpTo: PENDING_EXACT_UP_TO }))?.total ?? 0);
  }

  /** Seconds the longest-waiting due message has been due, for the `job_manager_oldest_due_pending_message_age_seconds` gauge. */
  async oldestDueAgeSeconds(): Promise<number> {
    return Number((await sql.oldestDueMessageAge(this.#pool))?.ageSeconds ?? 0);
  }

  async get(id: string): Promise<MessageView> {
    const row = uuidPattern.test(id) ? await sql.getMessage(this.#pool, { id }) : null;
    if (!row) throw new NotFoundError('message_not_found', `message "${id}" does not exist`);
    return toMessageView(row);
  }

  /** Newest sent first; the cursor is opaque to clients. */
  async listSent(limit: number, cursor?: string): Promise<MessagePage> {
    const after = cursor === undefined ? undefined : decodeCursor(cursor);
    const rows = await sql.listSentMessages(this.#pool, {
      afterSentAt: after?.at ?? null,
      afterId: after?.id ?? null,
      maxRows: limit + 1, // one more than asked: it says whether a next page exists
    });
    return keysetPage(rows, limit, toMessageView, (last) => encodeCursor({ at: last.sentAtCursor ?? '', id: last.id }));
  }

  /**
   * The message's delivery attempts, oldest first (keyset pagination on the
   * attempt number; the cursor is opaque to clients).
   * @throws NotFoundError (404 `message_not_found`) unknown id; ValidationError (400 `invalid_cursor`)
   */
  async listAttempts(id: string, limit: number, cursor?: string): Promise<AttemptPage> {
    if (!uuidPattern.test(id)) throw new NotFoundError('message_not_found', `message "${id}" does not exist`);
    const after = cursor === undefined ? 0 : decodeAttemptCursor(cursor, id);
    const rows = await listMessageAttempts(this.#pool, { messageId: id, afterAttempt: after, maxRows: limit + 1 });
    // No attempt on the page: tell a message not tried yet (or past its last page) from one that does not exist.
    if (rows.length === 0 && !(await messageExists(this.#pool, { id }))?.found) {
      throw new NotFoundError('message_not_found', `message "${id}" does not exist`);
    }
    return keysetPage(
      rows,
      limit,
      (row) => ({
        attempt: row.attempt,
        startedAt: row.startedAt.toISOString(),
        durationMs: row.durationMs,
        // The message_attempts_outcome_valid CHECK constraint admits only the spec's AttemptOutcome values.
        outcome: row.outcome as AttemptPage['items'][number]['outcome'],
        httpStatus: row.httpStatus,
        error: row.error,
        responseExcerpt: row.responseExcerpt,
      }),
      (last) => encodeAttemptCursor(id, last.attempt),
    );
  }

  /** Operators' listing, newest first, optionally of one status and/or one recipient. */
  async list(filter: MessageFilter, limit: number, cursor?: string): Promise<MessagePage> {
    const after = cursor === undefined ? undefined : decodeCursor(cursor);
    if (filter.to !== undefined && !/^\+[1-9][0-9]{7,14}$/.test(filter.to)) {
      throw new ValidationError('invalid_phone_number', 'to must be an E.164 phone number, e.g. +905551111111');
    }
    const page = {
      recipient: filter.to ?? null,
      afterCreatedAt: after?.at ?? null,
      afterId: after?.id ?? null,
      maxRows: limit + 1, // one more than asked: it says whether a next page exists
    };
    // Messages in flight have no entry in the listing-by-status index: their own query reads them on the lease index.
    const rows =
      filter.status === 'sending'
        ? await sql.listSendingMessages(this.#pool, page)
        : await sql.listMessages(this.#pool, { status: filter.status ?? null, ...page });
    return keysetPage(rows, limit, toMessageView, (last) =>
      encodeCursor({ at: last.createdAtCursor ?? '', id: last.id }),
    );
  }
}

export function toMessageView(row: MessageRow): MessageView {
  return {
    id: row.id,
    to: row.recipient,
    content: row.content,
    // The messages_status_valid CHECK constraint admits only the spec's MessageStatus values.
    status: row.status as MessageStatus,
    attempts: row.attempts,
    externalMessageId: row.externalMessageId,
    lastError: row.lastError,
    sendAt: row.sendAt ? row.sendAt.toISOString() : null,
    createdAt: row.createdAt.toISOString(),
    sentAt: row.sentAt ? row.sentAt.toISOString() : null,
  };
}

function boundOf(value: string | undefined, name: string): Date | null {
  if (value === undefined) return null;
  const parsed = parseRfc3339(value);
  if (!parsed)
    throw new ValidationError('invalid_range', `${name} must be an RFC 3339 date-time, e.g. 2026-12-01T00:00:00Z`);
  return parsed;
}
