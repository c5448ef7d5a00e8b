// PostgreSQL type -> TypeScript type, as sqlc-gen-typescript's `pg` driver
// (src/drivers/pg.ts) maps them for node-postgres' default type parsers.
// Keeping the same mapping keeps the generated API interchangeable with it.
// A column of a PostgreSQL enum type is the union of its labels as string
// literals (`"low" | "high"`), which is what node-postgres hands over.

import type { Catalog, Column } from './request.ts';

/**
 * The enums of a catalog by schema-qualified name (`public.mood`), with their
 * labels in declaration order. Build it with {@link enumIndex}.
 */
export interface EnumIndex {
  defaultSchema: string;
  byName: ReadonlyMap<string, readonly string[]>;
}

/** An index with no enums: every type maps as the official driver maps it. */
export const NO_ENUMS: EnumIndex = { defaultSchema: 'public', byName: new Map() };

/** Indexes the enums of every schema in sqlc's catalog by `<schema>.<name>`. */
export function enumIndex(catalog: Catalog): EnumIndex {
  const byName = new Map<string, readonly string[]>();
  for (const schema of catalog.schemas) {
    for (const e of schema.enums) byName.set(`${schema.name}.${e.name}`, e.values);
  }
  return { defaultSchema: catalog.defaultSchema || 'public', byName };
}

/**
 * The labels of the enum a column's type names, or undefined if it is not an
 * enum. sqlc names the type three ways: `{schema: 'audit', name: 'level'}` for
 * table columns, `{schema: '', name: 'audit.level'}` for parameters compared
 * with them, and `{schema: '', name: 'mood'}` for an unqualified name, which
 * PostgreSQL (default search_path) and sqlc resolve in the default schema.
 */
export function enumValues(column: Column | undefined, enums: EnumIndex): readonly string[] | undefined {
  const type = column?.type;
  if (type === undefined || type.name === '') return undefined;
  const qualified =
    type.schema !== ''
      ? `${type.schema}.${type.name}`
      : type.name.includes('.')
        ? type.name
        : `${enums.defaultSchema}.${type.name}`;
  return enums.byName.get(qualified);
}

/** `"low" | "high"`: the labels as TS string literals; `never` for an enum without labels. */
export function enumUnion(values: readonly string[]): string {
  return values.length === 0 ? 'never' : values.map((v) => JSON.stringify(v)).join(' | ');
}

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

/** Whether the column is an array (sqlc sets is_array, and array_dims for declared dimensions). */
export function isArrayColumn(column: Column): boolean {
  return column.isArray || column.arrayDims > 0;
}

/**
 * The TS type of a result column or parameter, with array dimensions and
 * nullability: `number`, `string[] | null`, `"low" | "high" | null`,
 * `("low" | "high")[]`. `enums` defaults to none (the official mapping).
 */
export function columnTsType(column: Column | undefined, enums: EnumIndex = NO_ENUMS): string {
  // The official driver checks `column.type === undefined` only; protojson with
  // EmitUnpopulated always sends a type, possibly with an empty name.
  const pgType = pgTypeName(column);
  if (column === undefined || pgType === undefined) return UNTYPED_TS_TYPE;
  const labels = enumValues(column, enums);
  let ts = labels === undefined ? scalarTsType(pgType) : enumUnion(labels);
  if (isArrayColumn(column)) {
    if (labels !== undefined && labels.length > 1) ts = `(${ts})`;
    const dims = column.arrayDims > 0 ? column.arrayDims : 1;
    ts += '[]'.repeat(dims);
  }
  return column.notNull ? ts : `${ts} | null`;
}

/**
 * Whether a result column is an array of an enum. node-postgres parses arrays
 * of built-in types only; an enum's array type has a per-database oid, so the
 * value arrives as the array literal text (`{low,high}`) and the generated
 * code parses it.
 */
export function isEnumArray(column: Column, enums: EnumIndex): boolean {
  return isArrayColumn(column) && enumValues(column, enums) !== undefined;
}

/** Whether the column needs the IPostgresInterval type import. */
export function usesInterval(column: Column | undefined): boolean {
  return pgTypeName(column) === 'interval';
}
