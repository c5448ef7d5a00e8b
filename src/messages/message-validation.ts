import type { components } from '../api/openapi.ts';
import { ValidationError } from '../errors.ts';

/** E.164: a plus sign and 8 to 15 digits, the first not zero. */
const e164 = /^\+[1-9][0-9]{7,14}$/;
/** Control characters other than newline (tab, NUL, escape, DEL, C1 …). */
const forbiddenControl = /[^\P{Cc}\n]/u;

/** One message to queue: openapi.yaml's `NewMessage` schema (the body of `POST /messages`). */
export type MessageInput = components['schemas']['NewMessage'];

/**
 * Checks one message; `field` prefixes the field names in errors (for a
 * batch: `messages[3].`). Length is counted in Unicode code points, so an
 * emoji is one character, as a person counts it. Content must be well-formed
 * Unicode (no lone surrogate), 1..maxLength code points, no control character
 * but newline. Throws ValidationError `invalid_phone_number` or `invalid_content`.
 */
export function validateMessage(input: MessageInput, maxLength: number, field = ''): MessageInput {
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
  return { to: input.to, content: input.content };
}
