// Identifiers in the generated code, named as sqlc-gen-typescript names them.

/**
 * snake_case -> camelCase the way the official plugin does it: lowercase the
 * whole name, then drop each `_` that precedes a letter and uppercase that
 * letter (`retry_delays_ms` -> `retryDelaysMs`; `col_2` stays `col_2`).
 */
export function camelCase(name: string): string {
  return name.toLowerCase().replace(/_([a-z])/g, (_match, letter: string) => letter.toUpperCase());
}

/** Property name for a parameter or column; unnamed ones become arg_<i> / col_<i>. */
function fieldName(prefix: string, index: number, name: string | undefined): string {
  return camelCase(name ? name : `${prefix}_${index}`);
}

export function argName(index: number, name: string | undefined): string {
  return fieldName('arg', index, name);
}

export function colName(index: number, name: string | undefined): string {
  return fieldName('col', index, name);
}

/** `GetJobByName` -> `getJobByName`: the function name. */
export function functionName(queryName: string): string {
  return queryName.charAt(0).toLowerCase() + queryName.slice(1);
}

/** `GetJobByName` -> `getJobByNameQuery`: the exported SQL constant. */
export function queryConstName(queryName: string): string {
  return `${functionName(queryName)}Query`;
}

export function argsInterfaceName(queryName: string): string {
  return `${queryName}Args`;
}

export function rowInterfaceName(queryName: string): string {
  return `${queryName}Row`;
}

/** `jobs.sql` -> `jobs_sql.ts` (the official plugin replaces the first dot). */
export function outputFileName(queryFileName: string): string {
  return `${queryFileName.replace('.', '_')}.ts`;
}

/**
 * Result column names made unique: a repeated name gets `_2`, `_3`, ...
 * (`SELECT a.id, b.id` -> id, id_2), as the official plugin renames them.
 */
export function dedupeColumnNames(names: readonly string[]): string[] {
  const seen = new Map<string, number>();
  const taken = new Set(names.filter((n) => n !== ''));
  return names.map((name) => {
    if (name === '') return name;
    const count = (seen.get(name) ?? 0) + 1;
    seen.set(name, count);
    if (count === 1) return name;
    let n = count;
    while (taken.has(`${name}_${n}`)) n++;
    const renamed = `${name}_${n}`;
    taken.add(renamed);
    return renamed;
  });
}
