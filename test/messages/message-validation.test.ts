// Properties of the phone and content validators: every E.164 number and
// every well-formed text of 1..max code points without control characters is
// accepted unchanged; everything else is refused with the field's code.
import { expect } from 'chai';
import fc from 'fast-check';
import { ValidationError } from '../../src/errors.ts';
import { validateMessage } from '../../src/messages/message-validation.ts';
import { loneSurrogate } from '../support/openapi-arbitraries.ts';

const e164 = fc
  .tuple(fc.integer({ min: 1, max: 9 }), fc.array(fc.integer({ min: 0, max: 9 }), { minLength: 7, maxLength: 14 }))
  .map(([first, rest]) => `+${first}${rest.join('')}`);
const isControl = (character: string) => /\p{Cc}/u.test(character) && character !== '\n';
const text = (maxLength: number) =>
  fc
    .array(fc.string({ unit: 'grapheme', minLength: 1, maxLength: 1 }), { minLength: 1, maxLength })
    .map((parts) => parts.join(''))
    .filter((value) => [...value].length >= 1 && [...value].length <= maxLength && ![...value].some(isControl));

function codeOf(input: unknown, maxLength = 160): string | undefined {
  try {
    validateMessage(input as never, maxLength);
    return undefined;
  } catch (error) {
    expect(error).to.be.instanceOf(ValidationError);
    return (error as ValidationError).code;
  }
}

describe('message validation', () => {
  it('accepts every E.164 number with any valid content, unchanged', () => {
    fc.assert(
      fc.property(e164, text(160), (to, content) => {
        expect(validateMessage({ to, content }, 160)).to.include({ to, content });
      }),
      { numRuns: 300 },
    );
  });

  it('refuses anything that is not "+", a non-zero digit and 7 to 14 more digits as invalid_phone_number', () => {
    const notE164 = fc.oneof(
      fc.string(),
      e164.map((number) => number.slice(1)),
      e164.map((number) => `${number}0000000000`.slice(0, 17)),
      fc
        .array(fc.integer({ min: 0, max: 9 }), { minLength: 1, maxLength: 7 })
        .map((digits) => `+1${digits.join('').slice(0, 6)}`),
      e164.map((number) => `+0${number.slice(2)}`),
      e164.map((number) => `${number} `),
      fc.constantFrom<unknown>(905551111111, null, true, ['+905551111111'], { number: '+905551111111' }),
    );
    fc.assert(
      fc.property(notE164, (to) => {
        fc.pre(typeof to !== 'string' || !/^\+[1-9]\d{7,14}$/.test(to));
        expect(codeOf({ to, content: 'x' })).to.equal('invalid_phone_number');
      }),
      { numRuns: 300 },
    );
  });

  it('counts code points: an emoji is one character', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 40 }), fc.constantFrom('😀', '👋🏽', 'ğ', 'a'), (count, character) => {
        const content = character.repeat(count);
        const length = [...content].length;
        expect(codeOf({ to: '+905551111111', content }, length)).to.equal(undefined);
        expect(codeOf({ to: '+905551111111', content: `${content}x` }, length)).to.equal('invalid_content');
      }),
    );
  });

  it('refuses lone surrogates, control characters, empty text and non-strings as invalid_content', () => {
    const badContent = fc.oneof(
      loneSurrogate,
      fc
        .tuple(
          text(20),
          fc.integer({ min: 0, max: 0x9f }).filter((code) => isControl(String.fromCharCode(code))),
        )
        .map(([value, code]) => `${value}${String.fromCharCode(code)}`),
      fc.constant(''),
      fc.constantFrom<unknown>(123, true, null, ['x'], { text: 'x' }),
    );
    fc.assert(
      fc.property(badContent, (content) => {
        expect(codeOf({ to: '+905551111111', content })).to.equal('invalid_content');
      }),
      { numRuns: 300 },
    );
  });
});
