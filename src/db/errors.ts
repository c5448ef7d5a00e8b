/**
 * What a database error means for the caller, from the shapes node-postgres
 * and Node's sockets produce. The HTTP layer turns these kinds into statuses;
 * this module knows PostgreSQL, not HTTP.
 *
 * Sources: PostgreSQL "Appendix A. Error Codes" (SQLSTATE classes), pg-pool
 * (`timeout exceeded when trying to connect`, `Cannot use a pool after calling
 * end on the pool`), pg Client (`Connection terminated unexpectedly`,
 * `Connection terminated due to connection timeout`, `Client has encountered a
 * connection error and is not queryable`, `Query read timeout`).
 */
export type DatabaseErrorKind =
  /** The database cannot be reached or cannot serve now; retrying later may work. */
  | 'unavailable'
  /** The database refused a value the caller sent (bad date, number out of range, NUL byte …). */
  | 'invalid_input'
  /** A unique constraint: the thing already exists. */
  | 'conflict';

/** Socket error codes of a peer that is gone, refusing or unreachable. */
const unreachableSocketCodes = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ECONNABORTED',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'EHOSTDOWN',
  'ENETUNREACH',
  'ENETDOWN',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EPIPE',
]);

/** SQLSTATEs (exact) that mean "not now" rather than "your input is wrong". */
const unavailableStates = new Set([
  '57P01', // admin_shutdown (server stopping, connection terminated, database dropped)
  '57P02', // crash_shutdown
  '57P03', // cannot_connect_now (starting up, shutting down, in recovery)
  '57P04', // database_dropped
  '57P05', // idle_session_timeout
  '57014', // query_canceled (statement_timeout)
  '3D000', // invalid_catalog_name: the database does not exist (dropped, misconfigured)
  '40001', // serialization_failure
  '40P01', // deadlock_detected
  '55P03', // lock_not_available (lock_timeout)
  '25006', // read_only_sql_transaction: connected to a standby after a failover
  '0A000', // feature_not_supported: e.g. "cached plan must not change result type" during a migration roll-out
]);

/** SQLSTATE classes (first two characters) that mean "not now". */
const unavailableClasses = new Set([
  '08', // connection exception
  '53', // insufficient resources (too many connections, out of memory, disk full)
  '28', // invalid authorization (password rotated under us): the operator's problem, not the client's
  '58', // system error (I/O)
]);

const unavailableMessages = [
  /timeout exceeded when trying to connect/i,
  /^Connection terminated/i,
  /not queryable/i,
  /Cannot use a pool after calling end on the pool/i,
  /Query read timeout/i,
  /the database system is (starting up|shutting down|in recovery mode)/i,
];

/** Classifies an error thrown by a query; undefined when it is not a recognised database error. */
export function databaseErrorKind(error: unknown): DatabaseErrorKind | undefined {
  if (typeof error !== 'object' || error === null) return undefined;
  const { code, message } = error as { code?: unknown; message?: unknown };
  if (typeof code === 'string') {
    if (unreachableSocketCodes.has(code)) return 'unavailable';
    if (/^[0-9A-Z]{5}$/.test(code)) {
      if (unavailableStates.has(code) || unavailableClasses.has(code.slice(0, 2))) return 'unavailable';
      if (code === '23505') return 'conflict';
      if (code.startsWith('22') || code.startsWith('23')) return 'invalid_input';
      return undefined;
    }
  }
  if (typeof message === 'string' && unavailableMessages.some((pattern) => pattern.test(message))) return 'unavailable';
  // net.connect to a name with several addresses fails with an AggregateError of the attempts.
  if (error instanceof AggregateError && error.errors.length > 0) {
    return error.errors.every((inner) => databaseErrorKind(inner) === 'unavailable') ? 'unavailable' : undefined;
  }
  return undefined;
}
