// fast-check arbitraries generated from openapi.yaml: valid values from a
// schema, and the mutations a careless or hostile client sends (wrong JSON
// types, unknown fields, invalid Unicode, broken encodings, forged numbers).
import { gzipSync } from 'node:zlib';
import fc from 'fast-check';
import { deref, type Json, type JsonObject, type Operation } from './openapi-contract.ts';

/** A value the schema accepts (arrays kept short; `example`s mixed in so business rules pass too). */
export function valid(schemaRef: unknown): fc.Arbitrary<Json> {
  const schema = deref(schemaRef);
  const example = schema.example as Json | undefined;
  const base = validWithoutExample(schema);
  const nullable = schema.nullable === true ? fc.oneof(base, fc.constant(null)) : base;
  return example === undefined
    ? nullable
    : fc.oneof({ arbitrary: fc.constant(example), weight: 3 }, { arbitrary: nullable, weight: 1 });
}

function validWithoutExample(schema: JsonObject): fc.Arbitrary<Json> {
  if (Array.isArray(schema.enum)) return fc.constantFrom(...(schema.enum as Json[]));
  switch (schema.type) {
    case 'object': {
      const properties = (schema.properties as JsonObject) ?? {};
      const required = new Set((schema.required as string[]) ?? []);
      const record: Record<string, fc.Arbitrary<Json>> = {};
      for (const [name, property] of Object.entries(properties)) record[name] = valid(property);
      const requiredKeys = Object.keys(properties).filter((name) => required.has(name));
      const minProperties = Number(schema.minProperties ?? 0);
      return fc
        .record(record, { requiredKeys })
        .filter((value) => Object.keys(value).length >= minProperties) as fc.Arbitrary<Json>;
    }
    case 'array':
      return fc.array(valid(schema.items), {
        minLength: Number(schema.minItems ?? 0),
        maxLength: Math.min(Number(schema.maxItems ?? 5), Math.max(Number(schema.minItems ?? 0), 5)),
      });
    case 'integer':
      return fc.integer({
        min: Number(schema.minimum ?? -1_000_000),
        max: Number(schema.maximum ?? 1_000_000),
      });
    case 'number':
      return fc.double({ min: Number(schema.minimum ?? -1e6), max: Number(schema.maximum ?? 1e6), noNaN: true });
    case 'boolean':
      return fc.boolean();
    default: {
      if (schema.format === 'uuid') return fc.uuid();
      if (schema.format === 'date-time') {
        return fc
          .date({ min: new Date('2000-01-01T00:00:00Z'), max: new Date('2100-01-01T00:00:00Z'), noInvalidDate: true })
          .map((date) => date.toISOString());
      }
      if (typeof schema.pattern === 'string') return fc.stringMatching(new RegExp(schema.pattern));
      return fc.string({
        unit: 'grapheme',
        minLength: Number(schema.minLength ?? 0),
        maxLength: Math.min(Number(schema.maxLength ?? 200), 200),
      });
    }
  }
}

/** Strings that are not valid Unicode text (lone surrogates). */
export const loneSurrogate = fc
  .tuple(fc.string({ maxLength: 5 }), fc.integer({ min: 0xd800, max: 0xdfff }), fc.string({ maxLength: 5 }))
  .map(([before, unit, after]) => `${before}${String.fromCharCode(unit)}${after}`);

/** A body as bytes on the wire with its headers. */
export interface WireBody {
  bytes: Buffer;
  headers: Record<string, string>;
  /** What was done to it, for the failure report. */
  kind: string;
}

const jsonHeaders = { 'content-type': 'application/json' };

/** JSON.stringify that keeps lone surrogates as escapes (it does), as a client would send them. */
const wire = (value: unknown, kind: string, headers: Record<string, string> = jsonHeaders): WireBody => ({
  bytes: Buffer.from(JSON.stringify(value), 'utf8'),
  headers,
  kind,
});

/** Sets `value` at a random depth-first path inside `root` (a copy), for one field mutation. */
function replaceSomewhere(root: Json, pick: number, replace: (old: Json) => Json): Json {
  const paths: Array<Array<string | number>> = [];
  const walk = (node: Json, path: Array<string | number>) => {
    paths.push(path);
    if (Array.isArray(node)) {
      for (const [index, child] of node.entries()) walk(child, [...path, index]);
    } else if (node && typeof node === 'object')
      for (const [key, child] of Object.entries(node)) walk(child, [...path, key]);
  };
  walk(root, []);
  const target = paths[pick % paths.length]!;
  if (target.length === 0) return replace(root);
  const copy = structuredClone(root);
  let parent = copy as any;
  for (const key of target.slice(0, -1)) parent = parent[key];
  parent[target.at(-1)!] = replace(parent[target.at(-1)!]);
  return copy;
}

/** Bodies for an operation: valid ones and every mutation kind. */
export function bodies(operation: Operation): fc.Arbitrary<WireBody | undefined> {
  if (!operation.bodySchema) return fc.constant(undefined);
  const schema = operation.bodySchema;
  const good = valid(schema);
  const mutations: Array<fc.Arbitrary<WireBody | undefined>> = [
    good.map((value) => wire(value, 'valid')),
    good.map((value) => wire(value, 'valid')),
    fc.constant(undefined),
    fc.tuple(good, fc.nat(), fc.constantFrom<Json[]>(true, 123, 'true', null, [], {})).map(([value, pick, other]) =>
      wire(
        replaceSomewhere(value, pick + 1, () => other),
        'wrong type',
      ),
    ),
    fc.tuple(good, fc.nat(), loneSurrogate).map(([value, pick, text]) =>
      wire(
        replaceSomewhere(value, pick + 1, (old) => (typeof old === 'string' ? `${old}${text}` : text)),
        'lone surrogate',
      ),
    ),
    good.map((value) => {
      const text = JSON.stringify(value);
      const at = text.lastIndexOf('"');
      const bytes =
        at > 0
          ? Buffer.concat([Buffer.from(text.slice(0, at)), Buffer.from([0xff, 0xfe]), Buffer.from(text.slice(at))])
          : Buffer.concat([Buffer.from(text), Buffer.from([0xc3])]);
      return { bytes, headers: jsonHeaders, kind: 'invalid UTF-8' };
    }),
    good.map((value) =>
      wire(
        value && typeof value === 'object' && !Array.isArray(value) ? { ...value, unexpected: 1 } : value,
        'unknown field',
      ),
    ),
    fc.constantFrom('{', '{"a":', 'nul', '[1,]', '{"to":"+1"}}', '"text"', '42', 'null').map((text) => ({
      bytes: Buffer.from(text),
      headers: jsonHeaders,
      kind: 'malformed JSON',
    })),
    good.map((value) => wire(value, 'text/plain', { 'content-type': 'text/plain' })),
    good.map((value) => wire(value, 'latin1 charset', { 'content-type': 'application/json; charset=latin1' })),
    fc.constant({
      bytes: Buffer.from('not gzip at all'),
      headers: { ...jsonHeaders, 'content-encoding': 'gzip' },
      kind: 'bad gzip',
    }),
    good.map((value) => ({
      bytes: gzipSync(JSON.stringify(value)),
      headers: { ...jsonHeaders, 'content-encoding': 'gzip' },
      kind: 'valid gzip',
    })),
    fc.constant({
      bytes: Buffer.from('{}'),
      headers: { ...jsonHeaders, 'content-encoding': 'snappy' },
      kind: 'unknown encoding',
    }),
    fc.constant({ bytes: Buffer.alloc(0), headers: jsonHeaders, kind: 'empty' }),
  ];
  return fc.oneof(...mutations);
}

/** A path parameter value, percent-encoded as it goes on the wire: valid, random, or not valid text. */
export function pathValue(parameter: JsonObject): fc.Arbitrary<string> {
  return fc.oneof(
    { arbitrary: valid(parameter.schema).map((value) => encodeURIComponent(String(value))), weight: 3 },
    { arbitrary: fc.string({ unit: 'grapheme', minLength: 1, maxLength: 40 }).map(encodeURIComponent), weight: 1 },
    { arbitrary: fc.constantFrom('%ff', '%ed%a0%80', '%c3', '%zz', '%', '..', '%00', 'a%2Fb'), weight: 1 },
  );
}

/** A query string for the operation's parameters: valid values, forged numbers, repeats, unknown names. */
/** The parameter's schema, with the parameter's own `example` standing in for the schema's. */
function withParameterExample(parameter: JsonObject): JsonObject {
  const schema = parameter.schema as JsonObject;
  return parameter.example === undefined ? schema : { ...schema, example: parameter.example };
}

export function queryString(operation: Operation): fc.Arbitrary<string> {
  const query = operation.parameters.filter((parameter) => parameter.in === 'query');
  if (query.length === 0) {
    return fc.oneof({ arbitrary: fc.constant(''), weight: 4 }, { arbitrary: fc.constant('?unknown=1'), weight: 1 });
  }
  const forged = fc.constantFrom(
    '1e309',
    'Infinity',
    '-Infinity',
    'NaN',
    '1.5',
    '-1',
    '0',
    '0x10',
    '+5',
    '%205',
    '',
    '99999999999999999999',
    '%ff',
    '%ed%a0%80',
    'true',
  );
  const entries = query.map((parameter) =>
    fc.oneof(
      { arbitrary: fc.constant(undefined), weight: 2 },
      {
        // A parameter's own `example` counts as the schema's (business rules, like E.164 for `to`, pass too).
        arbitrary: valid(withParameterExample(parameter)).map(
          (value) => `${parameter.name}=${encodeURIComponent(String(value))}`,
        ),
        weight: 3,
      },
      { arbitrary: forged.map((value) => `${parameter.name}=${value}`), weight: 1 },
      {
        arbitrary: fc.string({ maxLength: 30 }).map((value) => `${parameter.name}=${encodeURIComponent(value)}`),
        weight: 1,
      },
    ),
  );
  return fc
    .tuple(
      fc.tuple(...entries),
      fc.oneof(
        { arbitrary: fc.constant(''), weight: 5 },
        { arbitrary: fc.constantFrom('unknown=1', 'limit=1&limit=2'), weight: 1 },
      ),
    )
    .map(([pairs, extra]) => {
      const parts = [...pairs.filter((pair): pair is string => pair !== undefined), ...(extra ? [extra] : [])];
      return parts.length > 0 ? `?${parts.join('&')}` : '';
    });
}

/** Header parameters the operation declares (e.g. Idempotency-Key): absent, valid, or out of bounds. */
export function headerParameters(operation: Operation): fc.Arbitrary<Record<string, string>> {
  const headers = operation.parameters.filter((parameter) => parameter.in === 'header');
  const printable = fc.string({ unit: fc.constantFrom(...'abcXYZ019-_.:/ '.split('')), minLength: 1, maxLength: 40 });
  const entries = headers.map((parameter) =>
    fc
      .oneof(
        { arbitrary: fc.constant(undefined), weight: 2 },
        { arbitrary: fc.constantFrom('key-1', 'key-2', 'key-3'), weight: 2 },
        { arbitrary: printable, weight: 1 },
        { arbitrary: fc.constantFrom('', 'x'.repeat(256), 'caf\u00e9'), weight: 1 },
      )
      .map((value) => [String(parameter.name), value] as const),
  );
  return fc
    .tuple(...entries)
    .map((pairs) =>
      Object.fromEntries(pairs.filter((pair): pair is readonly [string, string] => pair[1] !== undefined)),
    );
}
