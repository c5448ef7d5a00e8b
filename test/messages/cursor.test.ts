// Properties of the listing cursor: what the service encodes decodes to the
// same position; anything else is refused with invalid_cursor, never let
// through to the database (where an impossible date used to be a 500).
import { expect } from 'chai';
import fc from 'fast-check';
import { ValidationError } from '../../src/errors.ts';
import {
  decodeAttemptCursor,
  decodeCursor,
  encodeAttemptCursor,
  encodeCursor,
  isRealTimestamp,
} from '../../src/messages/cursor.ts';
import { useTestDatabase } from '../support/postgres.ts';

const pad = (value: number, width = 2) => String(value).padStart(width, '0');
const instant = fc.date({
  min: new Date('0001-01-01T00:00:00Z'),
  max: new Date('9999-12-31T23:59:59Z'),
  noInvalidDate: true,
});
/** timestamptz text as PostgreSQL prints it (DateStyle ISO, TimeZone UTC), with microseconds. */
const postgresText = fc.tuple(instant, fc.integer({ min: 0, max: 999 })).map(([date, micros]) => {
  const fraction = `${pad(date.getUTCMilliseconds(), 3)}${pad(micros, 3)}`.replace(/0+$/, '');
  return `${pad(date.getUTCFullYear(), 4)}-${pad(date.getUTCMonth() + 1)}-${pad(date.getUTCDate())} ${pad(date.getUTCHours())}:${pad(date.getUTCMinutes())}:${pad(date.getUTCSeconds())}${fraction ? `.${fraction}` : ''}+00`;
});

function refusal(cursor: string): string | undefined {
  try {
    decodeCursor(cursor);
    return undefined;
  } catch (error) {
    expect(error).to.be.instanceOf(ValidationError);
    return (error as ValidationError).code;
  }
}

describe('message listing cursor', () => {
  it('decodes what it encodes', () => {
    fc.assert(
      fc.property(postgresText, fc.uuid(), (at, id) => {
        expect(decodeCursor(encodeCursor({ at, id }))).to.deep.equal({ at, id });
      }),
    );
  });

  it('refuses any other string with invalid_cursor, never another error', () => {
    fc.assert(
      fc.property(fc.oneof(fc.string(), fc.base64String(), fc.string({ unit: 'binary' })), (cursor) => {
        const code = refusal(cursor);
        if (code !== undefined) expect(code).to.equal('invalid_cursor');
      }),
      { numRuns: 500 },
    );
  });

  it('refuses JSON of the right shape whose timestamp names no real instant', () => {
    const impossible = fc.oneof(
      fc.integer({ min: 13, max: 99 }).map((month) => `2025-${pad(month)}-01 00:00:00+00`),
      fc.constant('0000-01-01 00:00:00+00'),
      fc
        .constantFrom('2025-02-29', '2024-02-30', '2025-04-31', '1900-02-29', '2025-01-00')
        .map((day) => `${day} 00:00:00+00`),
      fc.integer({ min: 24, max: 99 }).map((hour) => `2025-01-01 ${hour}:00:00+00`),
      fc.integer({ min: 60, max: 99 }).map((second) => `2025-01-01 00:00:${second}+00`),
      fc.integer({ min: 16, max: 99 }).map((offset) => `2025-01-01 00:00:00+${pad(offset)}`),
      fc.string(),
    );
    fc.assert(
      fc.property(impossible, fc.uuid(), (at, id) => {
        expect(isRealTimestamp(at), at).to.equal(false);
        expect(refusal(encodeCursor({ at, id })), at).to.equal('invalid_cursor');
      }),
      { numRuns: 300 },
    );
    expect(isRealTimestamp('2024-02-29 23:59:59.999999+00')).to.equal(true);
    expect(isRealTimestamp('2000-02-29 00:00:00-15:59')).to.equal(true);
  });

  describe('against PostgreSQL', () => {
    const db = useTestDatabase();
    it('accepts only timestamps PostgreSQL reads as the same instant', async () => {
      await fc.assert(
        fc.asyncProperty(postgresText, async (at) => {
          expect(isRealTimestamp(at)).to.equal(true);
          const { rows } = await db().pool.query('SELECT $1::timestamptz::text AS text', [at]);
          expect(rows[0].text).to.equal(at);
        }),
        { numRuns: 100 },
      );
    });
  });
});

describe('attempts cursor', () => {
  const id = '0f8fad5b-d9cb-469f-a165-70867728950e';
  const code = (cursor: string, messageId = id) => {
    try {
      return decodeAttemptCursor(cursor, messageId);
    } catch (error) {
      expect(error).to.be.instanceOf(ValidationError);
      return (error as ValidationError).code;
    }
  };
  const raw = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url');

  it('decodes what it encodes, for any attempt number', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 2_147_483_647 }), (attempt) => {
        expect(decodeAttemptCursor(encodeAttemptCursor(id, attempt), id)).to.equal(attempt);
      }),
    );
  });

  it("refuses another message's cursor and anything it did not make, with invalid_cursor", () => {
    expect(code(encodeAttemptCursor(id, 3), '1b4e28ba-2fa1-11d2-883f-0016d3cca427')).to.equal('invalid_cursor');
    for (const cursor of [
      '',
      '!!',
      raw([id]),
      raw([id, 0]),
      raw([id, 1.5]),
      raw([id, '2']),
      raw([id, 2_147_483_648]),
      raw(['x', 2]),
      raw({ id, attempt: 2 }),
      'a'.repeat(513),
    ]) {
      expect(code(cursor), cursor).to.equal('invalid_cursor');
    }
  });
});
