import type { components } from '../api/openapi.ts';
import type { Pool } from '../db/pool.ts';
import {
  countPendingMessages,
  type GetMessageRow,
  getMessage,
  insertMessage,
  insertMessages,
  listMessagesByStatus,
  listSentMessages,
} from '../db/sqlc/messages_sql.ts';
import { NotFoundError } from '../errors.ts';
import { decodeCursor, encodeCursor, uuidPattern } from './cursor.ts';
import { type MessageInput, validateMessage } from './message-validation.ts';

/** A message as the API shows it: openapi.yaml's `Message` schema. */
export type MessageView = components['schemas']['Message'];

/** One page of messages with the cursor of the next: openapi.yaml's `MessagePage` schema. */
export type MessagePage = components['schemas']['MessagePage'];

/** A message status: openapi.yaml's `MessageStatus` schema. */
export type MessageStatus = components['schemas']['MessageStatus'];

export const messageStatuses = ['pending', 'sending', 'sent', 'failed'] as const satisfies readonly MessageStatus[];

export class MessageService {
  readonly #pool: Pool;
  #maxLength: number;

  constructor(pool: Pool, maxLength: number) {
    this.#pool = pool;
    this.#maxLength = maxLength;
  }

  /** MESSAGE_MAX_LENGTH applies live. */
  setMaxLength(maxLength: number): void {
    this.#maxLength = maxLength;
  }

  async create(input: MessageInput): Promise<MessageView> {
    const message = validateMessage(input, this.#maxLength);
    const row = await insertMessage(this.#pool, { recipient: message.to, content: message.content });
    if (!row) throw new Error('insert returned no row');
    return toMessageView(row);
  }

  /** All or nothing: every message is validated before one insert statement stores them all. */
  async createBatch(inputs: MessageInput[]): Promise<MessageView[]> {
    const messages = inputs.map((input, index) => validateMessage(input, this.#maxLength, `messages[${index}].`));
    const rows = await insertMessages(this.#pool, {
      recipients: messages.map((message) => message.to),
      contents: messages.map((message) => message.content),
    });
    return rows.map(toMessageView);
  }

  /** Messages waiting to be sent, for the `job_manager_messages_pending` gauge. */
  async countPending(): Promise<number> {
    return Number((await countPendingMessages(this.#pool))?.total ?? 0);
  }

  async get(id: string): Promise<MessageView> {
    const row = uuidPattern.test(id) ? await getMessage(this.#pool, { id }) : null;
    if (!row) throw new NotFoundError('message_not_found', `message "${id}" does not exist`);
    return toMessageView(row);
  }

  /** Newest sent first; the cursor is opaque to clients. */
  async listSent(limit: number, cursor?: string): Promise<MessagePage> {
    const after = cursor === undefined ? undefined : decodeCursor(cursor);
    const rows = await listSentMessages(this.#pool, {
      afterSentAt: after?.at ?? null,
      afterId: after?.id ?? null,
      maxRows: limit,
    });
    const last = rows.at(-1);
    return {
      items: rows.map(toMessageView),
      nextCursor: rows.length === limit && last ? encodeCursor({ at: last.sentAtCursor ?? '', id: last.id }) : null,
    };
  }

  /** Operators' view of one status, newest first. */
  async listByStatus(status: MessageStatus, limit: number, cursor?: string): Promise<MessagePage> {
    const after = cursor === undefined ? undefined : decodeCursor(cursor);
    const rows = await listMessagesByStatus(this.#pool, {
      status,
      afterCreatedAt: after?.at ?? null,
      afterId: after?.id ?? null,
      maxRows: limit,
    });
    const last = rows.at(-1);
    return {
      items: rows.map(toMessageView),
      nextCursor: rows.length === limit && last ? encodeCursor({ at: last.createdAtCursor ?? '', id: last.id }) : null,
    };
  }
}

export function toMessageView(row: GetMessageRow): MessageView {
  return {
    id: row.id,
    to: row.recipient,
    content: row.content,
    // The messages_status_valid CHECK constraint admits only the spec's MessageStatus values.
    status: row.status as MessageStatus,
    attempts: row.attempts,
    externalMessageId: row.externalMessageId,
    lastError: row.lastError,
    createdAt: row.createdAt.toISOString(),
    sentAt: row.sentAt ? row.sentAt.toISOString() : null,
  };
}
