// The parts of sqlc's plugin.GenerateRequest (protos/plugin/codegen.proto) this
// plugin reads, and a reader for its protojson form. sqlc marshals with
// UseProtoNames + EmitUnpopulated (snake_case, every field present); protojson
// also accepts the lowerCamelCase / json_name spellings, so we do too, and
// absent fields get proto3 defaults.

export interface Identifier {
  catalog: string;
  schema: string;
  name: string;
}

export interface Column {
  name: string;
  notNull: boolean;
  isArray: boolean;
  arrayDims: number;
  isNamedParam: boolean;
  type: Identifier | undefined;
}

export interface Parameter {
  number: number;
  column: Column | undefined;
}

export interface Query {
  name: string;
  cmd: string;
  text: string;
  filename: string;
  columns: Column[];
  params: Parameter[];
  comments: string[];
}

/** A PostgreSQL enum type: `CREATE TYPE <schema>.<name> AS ENUM (<values>)`. */
export interface EnumType {
  name: string;
  /** Labels in declaration order (sqlc's `vals`, after any ALTER TYPE ... ADD VALUE). */
  values: string[];
}

export interface Schema {
  name: string;
  enums: EnumType[];
}

/** The parts of sqlc's catalog the plugin reads: the enums of each schema. */
export interface Catalog {
  /** The schema unqualified names resolve to (sqlc: `public` for PostgreSQL). */
  defaultSchema: string;
  schemas: Schema[];
}

export interface GenerateRequest {
  sqlcVersion: string;
  /** Raw JSON text of the codegen `options` block (decoded from base64 bytes). */
  pluginOptions: string;
  catalog: Catalog;
  queries: Query[];
}

type Json = Record<string, unknown>;

function isObject(value: unknown): value is Json {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Field by proto name, falling back to the lowerCamelCase / json_name spellings. */
function field(obj: Json, ...names: string[]): unknown {
  for (const name of names) {
    if (obj[name] !== undefined && obj[name] !== null) return obj[name];
  }
  return undefined;
}

function str(obj: Json, ...names: string[]): string {
  const value = field(obj, ...names);
  if (value === undefined) return '';
  if (typeof value !== 'string') throw new Error(`expected string for ${names[0]}, got ${typeof value}`);
  return value;
}

function bool(obj: Json, ...names: string[]): boolean {
  const value = field(obj, ...names);
  if (value === undefined) return false;
  if (typeof value !== 'boolean') throw new Error(`expected boolean for ${names[0]}, got ${typeof value}`);
  return value;
}

function int(obj: Json, ...names: string[]): number {
  const value = field(obj, ...names);
  if (value === undefined) return 0;
  // protojson may write int32 as a number or a decimal string.
  const n = typeof value === 'string' ? Number(value) : value;
  if (typeof n !== 'number' || !Number.isInteger(n)) throw new Error(`expected integer for ${names[0]}`);
  return n;
}

function list(obj: Json, ...names: string[]): unknown[] {
  const value = field(obj, ...names);
  if (value === undefined) return [];
  if (!Array.isArray(value)) throw new Error(`expected array for ${names[0]}`);
  return value;
}

function bytesAsText(obj: Json, ...names: string[]): string {
  const value = str(obj, ...names);
  // protojson bytes: standard or URL-safe base64, padding optional.
  return Buffer.from(value, 'base64').toString('utf8');
}

function parseIdentifier(value: unknown): Identifier | undefined {
  if (!isObject(value)) return undefined;
  return { catalog: str(value, 'catalog'), schema: str(value, 'schema'), name: str(value, 'name') };
}

function parseColumn(value: unknown): Column | undefined {
  if (!isObject(value)) return undefined;
  return {
    name: str(value, 'name'),
    notNull: bool(value, 'not_null', 'notNull'),
    isArray: bool(value, 'is_array', 'isArray'),
    arrayDims: int(value, 'array_dims', 'arrayDims'),
    isNamedParam: bool(value, 'is_named_param', 'isNamedParam'),
    type: parseIdentifier(field(value, 'type')),
  };
}

function parseQuery(value: unknown): Query {
  if (!isObject(value)) throw new Error('query is not an object');
  return {
    name: str(value, 'name'),
    cmd: str(value, 'cmd'),
    text: str(value, 'text'),
    filename: str(value, 'filename'),
    columns: list(value, 'columns').map((c) => {
      const column = parseColumn(c);
      if (column === undefined) throw new Error('column is not an object');
      return column;
    }),
    params: list(value, 'params', 'parameters').map((p) => {
      if (!isObject(p)) throw new Error('parameter is not an object');
      return { number: int(p, 'number'), column: parseColumn(field(p, 'column')) };
    }),
    comments: list(value, 'comments').map((c) => String(c)),
  };
}

function parseCatalog(value: unknown): Catalog {
  if (value === undefined) return { defaultSchema: '', schemas: [] };
  if (!isObject(value)) throw new Error('catalog is not an object');
  return {
    defaultSchema: str(value, 'default_schema', 'defaultSchema'),
    schemas: list(value, 'schemas').map((s) => {
      if (!isObject(s)) throw new Error('schema is not an object');
      return {
        name: str(s, 'name'),
        enums: list(s, 'enums').map((e) => {
          if (!isObject(e)) throw new Error('enum is not an object');
          return { name: str(e, 'name'), values: list(e, 'vals').map((v) => String(v)) };
        }),
      };
    }),
  };
}

/** Reads a GenerateRequest from the JSON text sqlc writes to the plugin's stdin. */
export function parseGenerateRequest(text: string): GenerateRequest {
  const root: unknown = JSON.parse(text);
  if (!isObject(root)) throw new Error('GenerateRequest is not a JSON object');
  return {
    sqlcVersion: str(root, 'sqlc_version', 'sqlcVersion'),
    pluginOptions: bytesAsText(root, 'plugin_options', 'pluginOptions'),
    catalog: parseCatalog(field(root, 'catalog')),
    queries: list(root, 'queries').map(parseQuery),
  };
}
