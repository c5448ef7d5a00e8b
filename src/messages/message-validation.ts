import type { components } from '../api/openapi.ts';
import { ValidationError } from '../errors.ts';

/** E.164: a plus sign and 8 to 15 digits, the first not zero. */
const e164 = /^\+[1-9][0-9]{7,14}$/;
/** Control characters other than newline (tab, NUL, escape, DEL, C1 …). */
const forbiddenControl = /[^\P{Cc}\n]/u;

/** One message to queue: openapi.yaml's `NewMessage` schema (the body of `POST /messages`). */
export type MessageInput = components['schemas']['NewMessage'];

/** A validated message: `sendAt` is the parsed time, or null for "at once". */
export interface ValidMessage {
  to: string;
  content: string;
  sendAt: Date | null;
}

/** RFC 3339 date-time: date, "T" (or t, or space), time, optional fraction, and Z or an offset. */
const rfc3339 = /^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(\.\d{1,9})?([Zz]|[+-](\d{2}):(\d{2}))$/;

/**
 * Parses an RFC 3339 date-time (e.g. `2026-12-01T09:00:00+03:00`). Returns
 * undefined for anything else, including impossible dates (February 30,
 * hour 24) and a missing offset. Leap seconds are not accepted.
 */
export function parseRfc3339(text: string): Date | undefined {
  const match = rfc3339.exec(text);
  if (!match) return undefined;
  const [, year, month, day, hour, minute, second, , , offsetHours, offsetMinutes] = match.map(Number);
  if (month! < 1 || month! > 12 || hour! > 23 || minute! > 59 || second! > 59) return undefined;
  if (offsetHours !== undefined && !Number.isNaN(offsetHours) && (offsetHours > 23 || offsetMinutes! > 59))
    return undefined;
  const daysInMonth = new Date(Date.UTC(year!, month!, 0)).getUTCDate();
  if (day! < 1 || day! > daysInMonth) return undefined;
  // Date.parse reads ISO 8601 with T, Z and milliseconds; finer fractions are cut to milliseconds.
  const iso = text
    .replace(/^(.{10})[Tt ]/, '$1T')
    .replace(/[Zz]$/, 'Z')
    .replace(/(\.\d{3})\d+/, '$1');
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? undefined : date;
}

/**
 * Checks one message; `field` prefixes the field names in errors (for a
 * batch: `messages[3].`). Length is counted in Unicode code points, so an
 * emoji is one character, as a person counts it. Content must be well-formed
 * Unicode (no lone surrogate), 1..maxLength code points, no control character
 * but newline. Throws ValidationError `invalid_phone_number` or `invalid_content`.
 */
export function validateMessage(input: MessageInput, maxLength: number, field = ''): ValidMessage {
  if (typeof input.to !== 'string' || !e164.test(input.to)) {
    throw new ValidationError(
      'invalid_phone_number',
      `${field}to must be an E.164 phone number: "+" and 8 to 15 digits, e.g. +905551111111`,
    );
  }
  if (typeof input.content !== 'string') {
    throw new ValidationError('invalid_content', `${field}content must be a string`);
  }
  if (!input.content.isWellFormed()) {
    throw new ValidationError(
      'invalid_content',
      `${field}content is not valid Unicode: it contains a lone surrogate (an unpaired \\uD800-\\uDFFF)`,
    );
  }
  const length = [...input.content].length;
  if (length < 1 || length > maxLength) {
    throw new ValidationError(
      'invalid_content',
      `${field}content must be 1 to ${maxLength} characters (got ${length})`,
    );
  }
  if (forbiddenControl.test(input.content)) {
    throw new ValidationError(
      'invalid_content',
      `${field}content must not contain control characters other than newline`,
    );
  }
  let sendAt: Date | null = null;
  if (input.sendAt !== undefined && input.sendAt !== null) {
    const parsed = typeof input.sendAt === 'string' ? parseRfc3339(input.sendAt) : undefined;
    if (!parsed) {
      throw invalidSendAt(`${field}sendAt`);
    }
    // Answered as RFC 3339 in UTC, so the instant must have a four-digit UTC year: an offset can push
    // 9999-12-31T23:59:59-23:59 into year 10000 (and 0001-01-01T00:00:00+23:59 into year 0).
    const year = parsed.getUTCFullYear();
    if (year < 1 || year > 9999) {
      throw new ValidationError(
        'invalid_send_at',
        `${field}sendAt must lie between 0001-01-01T00:00:00Z and 9999-12-31T23:59:59Z`,
      );
    }
    sendAt = parsed;
  }
  return { to: input.to, content: input.content, sendAt };
}

/**
 * The 400 for a `sendAt` that is not an RFC 3339 date-time with an offset.
 * @param name the field as the client wrote it, e.g. `sendAt` or `messages[3].sendAt`
 */
export function invalidSendAt(name: string): ValidationError {
  return new ValidationError(
    'invalid_send_at',
    `${name} must be an RFC 3339 date-time with an offset, e.g. 2026-12-01T09:00:00Z`,
  );
}
