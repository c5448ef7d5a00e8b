import { ValidationError } from '../errors.ts';

/**
 * The keyset-pagination cursor of message listings: base64url of the JSON
 * array `[timestamp, id]`, where `timestamp` is the database's own text of the
 * last row's sort time (`2025-01-01 12:00:00.123456+00`, so no microsecond is
 * lost) and `id` its uuid. Opaque to clients; a cursor that does not decode
 * to a real instant and a uuid is refused before any query runs.
 */
export interface Cursor {
  /** PostgreSQL timestamptz text, checked to be a real date and time. */
  at: string;
  id: string;
}

export const uuidPattern = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** YYYY-MM-DD HH:MM:SS[.ffffff][±HH[:MM]] as PostgreSQL prints timestamptz under DateStyle ISO. */
const timestampText = /^(\d{4})-(\d{2})-(\d{2}) (\d{2}):(\d{2}):(\d{2})(?:\.\d{1,6})?(?:([+-])(\d{2})(?::(\d{2}))?)?$/;

/**
 * One page of a keyset-paginated listing from `rows`, fetched with `limit + 1`
 * as the row limit: the first `limit` rows as items, and `cursorOf(last item's
 * row)` as `nextCursor` when the extra row says another page exists (null
 * otherwise, also on an exactly full last page).
 */
export function keysetPage<Row, Item>(
  rows: readonly Row[],
  limit: number,
  toItem: (row: Row) => Item,
  cursorOf: (last: Row) => string,
): { items: Item[]; nextCursor: string | null } {
  const page = rows.slice(0, limit);
  const last = page.at(-1);
  return { items: page.map(toItem), nextCursor: rows.length > limit && last ? cursorOf(last) : null };
}

export function encodeCursor(cursor: Cursor): string {
  return Buffer.from(JSON.stringify([cursor.at, cursor.id])).toString('base64url');
}

/**
 * Decodes a cursor. Throws ValidationError `invalid_cursor` (400) unless it is
 * base64url of `[timestamp, uuid]` whose timestamp is a real instant: year
 * 0001-9999, month 1-12, a day that month has (leap years counted), hour
 * 0-23, minute and second 0-59, UTC offset at most ±15:59.
 */
export function decodeCursor(cursor: string): Cursor {
  const [at, id] = decodePair(cursor);
  if (typeof at !== 'string' || typeof id !== 'string' || !uuidPattern.test(id) || !isRealTimestamp(at)) {
    throw invalidCursor();
  }
  return { at, id };
}

function invalidCursor(): ValidationError {
  return new ValidationError('invalid_cursor', 'cursor is not one this API returned');
}

/** base64url of a JSON array of two values, or ValidationError `invalid_cursor`. */
function decodePair(cursor: string): [unknown, unknown] {
  if (cursor.length > 512 || !/^[A-Za-z0-9_-]+$/.test(cursor)) throw invalidCursor();
  let decoded: unknown;
  try {
    decoded = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(Buffer.from(cursor, 'base64url')));
  } catch {
    throw invalidCursor();
  }
  if (!Array.isArray(decoded) || decoded.length !== 2) throw invalidCursor();
  return [decoded[0], decoded[1]];
}

/** Whether `text` is PostgreSQL timestamptz text naming an instant that exists. */
export function isRealTimestamp(text: string): boolean {
  const parts = timestampText.exec(text);
  if (!parts) return false;
  const [year, month, day, hour, minute, second] = parts.slice(1, 7).map(Number) as [
    number,
    number,
    number,
    number,
    number,
    number,
  ];
  const offsetHours = parts[8] === undefined ? 0 : Number(parts[8]);
  const offsetMinutes = parts[9] === undefined ? 0 : Number(parts[9]);
  return (
    year >= 1 &&
    month >= 1 &&
    month <= 12 &&
    day >= 1 &&
    day <= daysInMonth(year, month) &&
    hour <= 23 &&
    minute <= 59 &&
    second <= 59 &&
    offsetHours <= 15 &&
    offsetMinutes <= 59
  );
}

function daysInMonth(year: number, month: number): number {
  if (month === 2) return (year % 4 === 0 && year % 100 !== 0) || year % 400 === 0 ? 29 : 28;
  return [4, 6, 9, 11].includes(month) ? 30 : 31;
}

/**
 * The cursor of a message's attempts (GET /messages/{id}/attempts): base64url
 * of the JSON array `[messageId, attempt]` of the last attempt on the page.
 * Opaque to clients.
 */
export function encodeAttemptCursor(messageId: string, attempt: number): string {
  return Buffer.from(JSON.stringify([messageId, attempt])).toString('base64url');
}

/**
 * Decodes an attempts cursor into the attempt number the next page starts
 * after. Throws ValidationError `invalid_cursor` (400) unless it is base64url
 * of `[uuid, whole number >= 1]` naming `messageId` itself (a cursor of
 * another message's attempts is refused).
 */
export function decodeAttemptCursor(cursor: string, messageId: string): number {
  const [id, attempt] = decodePair(cursor);
  if (typeof id !== 'string' || id.toLowerCase() !== messageId.toLowerCase()) throw invalidCursor();
  if (typeof attempt !== 'number' || !Number.isSafeInteger(attempt) || attempt < 1 || attempt > 2_147_483_647) {
    throw invalidCursor();
  }
  return attempt;
}
