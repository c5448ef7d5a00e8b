import type { Pool } from '../db/pool.ts';
import {
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

/** A message as the API shows it. */
export interface MessageView {
  id: string;
  to: string;
  content: string;
  status: string;
  attempts: number;
  externalMessageId: string | null;
  lastError: string | null;
  createdAt: string;
  sentAt: string | null;
}

export interface Page<T> {
  items: T[];
  nextCursor: string | null;
}

export const messageStatuses = ['pending', 'sending', 'sent', 'failed'] as const;
export type MessageStatus = (typeof messageStatuses)[number];

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

  async get(id: string): Promise<MessageView> {
    const row = uuidPattern.test(id) ? await getMessage(this.#pool, { id }) : null;
    if (!row) throw new NotFoundError('message_not_found', `message "${id}" does not exist`);
    return toMessageView(row);
  }

  /** Newest sent first; the cursor is opaque to clients. */
  async listSent(limit: number, cursor?: string): Promise<Page<MessageView>> {
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
  async listByStatus(status: MessageStatus, limit: number, cursor?: string): Promise<Page<MessageView>> {
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
    status: row.status,
    attempts: row.attempts,
    externalMessageId: row.externalMessageId,
    lastError: row.lastError,
    createdAt: row.createdAt.toISOString(),
    sentAt: row.sentAt ? row.sentAt.toISOString() : null,
  };
}
