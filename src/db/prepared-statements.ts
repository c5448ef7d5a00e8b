/**
 * Named prepared statements for the statements the delivery loop and intake
 * run many times a second. Unnamed, as node-postgres sends a query by default,
 * PostgreSQL parses, analyses and plans a statement again at every call: for
 * the outcome write (RecordDeliveryOutcomes) that was 3.4 ms of planning per
 * chunk on a slow spell of the bench machine, and with the claim's and the
 * promotion's planning about 15 % of the statements' time in dispatch
 * (docs/benchmarks.md, "Fourth round"). Named, a statement is parsed once per
 * connection, and after five calls PostgreSQL keeps a generic plan when it
 * costs no more than the custom ones.
 *
 * Only on a real session: a transaction pooler (PgBouncer in transaction
 * mode) may run the next statement on a server connection that never saw the
 * name, so there every statement stays unnamed (`createPool` leaves this out).
 * Only the statements in `preparedStatementNames`: each one's plan does not
 * depend on its parameters (an index walk the claim's transaction pins, a
 * JSON array joined by primary key, a single row). A listing, whose filter
 * values decide which index fits, keeps a plan made for its values.
 *
 * A migration that changes the row type a prepared statement returns (a
 * column added to a table it reads with `*`, a type changed) makes PostgreSQL
 * refuse that statement on every connection that prepared it: "cached plan
 * must not change result type" (SQLSTATE 0A000). The call that meets it
 * fails (the callers retry: the outcome write until it lands, the claim at
 * the next chunk or run); the connection then prepares its statements anew
 * under fresh names, so the refusal happens once per connection, never for good.
 */
import type pg from 'pg';

/** The sqlc statements (their `-- name:`) run as named prepared statements on a real session. */
export const preparedStatementNames: ReadonlySet<string> = new Set([
  'InsertMessage',
  'InsertMessages',
  'ReleaseExpiredMessageLeases',
  'PromoteDueMessages',
  'ClaimMessages',
  'RecordDeliveryOutcomes',
  'GetDeliveryPause',
  'TakeDeliveryTokens',
]);

/** Prefix of the names on the server (`pg_prepared_statements.name`): `jm_ClaimMessages_1`. */
const namePrefix = 'jm_';

/** sqlc's text of each statement starts with its `-- name: <Name>` line; undefined for any other text. */
const nameOfText = new Map<string, string | null>();
function sqlcNameOf(text: string): string | undefined {
  let name = nameOfText.get(text);
  if (name === undefined) {
    const found = /^-- name: (\w+)/.exec(text)?.[1];
    name = found && preparedStatementNames.has(found) ? found : null;
    nameOfText.set(text, name);
  }
  return name ?? undefined;
}

function isStaleResultType(error: unknown): boolean {
  const { code, message } = (error ?? {}) as { code?: unknown; message?: unknown };
  return code === '0A000' && typeof message === 'string' && message.includes('must not change result type');
}

/**
 * Makes `client` run the statements of `preparedStatementNames` as named
 * prepared statements (`jm_<Name>_<generation>`); every other call goes
 * through unchanged. Call once per new connection (node-postgres's pool
 * `connect` event). A call that PostgreSQL refuses with "cached plan must
 * not change result type" still fails; it moves the connection to a new
 * generation of names, so the next call prepares the statement again.
 */
export function usePreparedStatements(client: pg.ClientBase): void {
  const query = client.query.bind(client) as (config: unknown, ...rest: unknown[]) => unknown;
  let generation = 1;
  const noteFailure = (error: unknown) => {
    if (isStaleResultType(error)) generation += 1;
  };
  const prepared = (config: unknown, ...rest: unknown[]): unknown => {
    const { text, name } = (typeof config === 'object' && config !== null ? config : {}) as Record<string, unknown>;
    const sqlcName = typeof text === 'string' && name === undefined ? sqlcNameOf(text) : undefined;
    if (!sqlcName) return query(config, ...rest);
    const named = { ...(config as object), name: `${namePrefix}${sqlcName}_${generation}` };
    // node-postgres's pool calls query(config, values, callback); the service's own code, query(config).
    const callback = rest.findIndex((arg) => typeof arg === 'function');
    if (callback >= 0) {
      const done = rest[callback] as (error: unknown, result?: unknown) => void;
      const args = rest.with(callback, (error: unknown, result?: unknown) => {
        noteFailure(error);
        done(error, result);
      });
      return query(named, ...args);
    }
    return (query(named, ...rest) as Promise<unknown>).catch((error: unknown) => {
      noteFailure(error);
      throw error;
    });
  };
  (client as { query: unknown }).query = prepared;
}
