// PostgreSQL type -> TypeScript type, as sqlc-gen-typescript's `pg` driver
// (src/drivers/pg.ts) maps them for node-postgres' default type parsers.
// Keeping the same mapping keeps the generated API interchangeable with it.

import type { Column } from './request.ts';

const NUMBER_TYPES = new Set([
  'float4',
  'float8',
  'int2',
  'int4',
  'oid',
  'serial',
  'serial2',
  'serial4',
  'smallserial',
]);

const DATE_TYPES = new Set(['date', 'time', 'timetz', 'timestamp', 'timestamptz']);

const SPECIAL_TYPES: ReadonlyMap<string, string> = new Map([
  ['bool', 'boolean'],
  ['bytea', 'Buffer'],
  ['json', 'any'],
  ['jsonb', 'any'],
  ['interval', 'IPostgresInterval'],
  ['point', '{ x: number; y: number }'],
  ['circle', '{ x: number; y: number; radius: number }'],
]);

/**
 * What the official driver falls back to for a type name it does not list
 * (int8, bigint, numeric, text, uuid, but also spellings like `integer` that
 * sqlc sometimes reports): node-postgres hands those over as text.
 */
export const FALLBACK_TS_TYPE = 'string';

/** What a column without any type information becomes. */
export const UNTYPED_TS_TYPE = 'any';

/** The type name without the `pg_catalog.` prefix sqlc puts on some names. */
export function pgTypeName(column: Column | undefined): string | undefined {
  const name = column?.type?.name;
  if (name === undefined) return undefined;
  const prefix = 'pg_catalog.';
  return name.startsWith(prefix) ? name.slice(prefix.length) : name;
}

/** The TS type of one (non-array, non-null) value of a PostgreSQL type. */
export function scalarTsType(pgType: string): string {
  if (NUMBER_TYPES.has(pgType)) return 'number';
  if (DATE_TYPES.has(pgType)) return 'Date';
  return SPECIAL_TYPES.get(pgType) ?? FALLBACK_TS_TYPE;
}

/** The TS type of a result column or parameter, with array dimensions and nullability. */
export function columnTsType(column: Column | undefined): string {
  // The official driver checks `column.type === undefined` only; protojson with
  // EmitUnpopulated always sends a type, possibly with an empty name.
  const pgType = pgTypeName(column);
  if (column === undefined || pgType === undefined) return UNTYPED_TS_TYPE;
  let ts = scalarTsType(pgType);
  if (column.isArray || column.arrayDims > 0) {
    const dims = column.arrayDims > 0 ? column.arrayDims : 1;
    ts += '[]'.repeat(dims);
  }
  return column.notNull ? ts : `${ts} | null`;
}

/** Whether the column needs the IPostgresInterval type import. */
export function usesInterval(column: Column | undefined): boolean {
  return pgTypeName(column) === 'interval';
}
