/**
 * Whether an error means "the database cannot be reached right now" (as
 * opposed to a bug or a bad request): refused or dropped connections, a pool
 * checkout or connect timeout, a reply that never came (half-open link), the
 * server shutting down or starting up, too many connections, a statement
 * timeout. The API answers those with 503 and Retry-After.
 */
export function isDatabaseUnavailable(error: unknown): boolean {
  if (typeof error !== 'object' || error === null) return false;
  const { code, message } = error as { code?: unknown; message?: unknown };
  if (typeof code === 'string') {
    if (networkCodes.has(code)) return true;
    // SQLSTATE class 08 (connection exception), shutdown / start-up, too many connections, statement timeout.
    if (code.startsWith('08') || unavailableSqlStates.has(code)) return true;
  }
  if (typeof message === 'string' && unavailableMessages.some((pattern) => pattern.test(message))) return true;
  const cause = (error as { cause?: unknown }).cause;
  return cause !== undefined && cause !== error && isDatabaseUnavailable(cause);
}

/** Seconds a client is asked to wait before trying again while the database is unreachable. */
export const databaseRetryAfterSeconds = 5;

const networkCodes = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  'EPIPE',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENOTFOUND',
  'EAI_AGAIN',
]);
const unavailableSqlStates = new Set(['57P01', '57P02', '57P03', '53300', '57014']);
const unavailableMessages = [
  /timeout exceeded when trying to connect/i,
  /Connection terminated/i,
  /Query read timeout/i,
  /Client has encountered a connection error/i,
  /Client was closed and is not queryable/i,
  /Cannot use a pool after calling end/i,
  /is not currently accepting connections/i,
  /the database system is (starting up|shutting down|in recovery mode|not yet accepting connections)/i,
];
