import pg from 'pg';

export type Pool = pg.Pool;
export type PoolClient = pg.PoolClient;

/** How long the service waits on the database before giving up (DATABASE_* settings). */
export interface ConnectionBounds {
  /** Opening a connection, start-up included (ms). */
  connectTimeoutMs: number;
  /** Server-side statement_timeout (ms); the client stops waiting for a reply 2 s later. */
  statementTimeoutMs: number;
}

export const defaultConnectionBounds: ConnectionBounds = { connectTimeoutMs: 5_000, statementTimeoutMs: 10_000 };

/** TCP keepalive starts probing an idle connection after this long (ms). */
const keepAliveInitialDelayMs = 10_000;
/** A session left idle inside a transaction (a frozen pod) is ended by the server after this long (ms). */
const idleInTransactionTimeoutMs = 60_000;

/**
 * Session settings pinned on every connection the service opens (its pool,
 * the scheduler's LISTEN connection, pg-boss's pool), sent in the start-up
 * packet so no database or role default can change them: ISO dates in UTC
 * (node-postgres parses timestamps in that form), the standard interval
 * format, and the statement timeouts.
 */
export function sessionOptions(bounds: ConnectionBounds = defaultConnectionBounds): string {
  return [
    'DateStyle=ISO,MDY',
    'TimeZone=UTC',
    'IntervalStyle=postgres',
    `statement_timeout=${bounds.statementTimeoutMs}`,
    `idle_in_transaction_session_timeout=${Math.max(idleInTransactionTimeoutMs, bounds.statementTimeoutMs)}`,
  ]
    .map((setting) => `-c ${setting}`)
    .join(' ');
}

/**
 * node-postgres settings that bound every call on a connection: a connect
 * timeout, a client-side reply timeout (query_timeout, so a half-open
 * connection whose server will never answer is given up on and replaced), TCP
 * keepalive, and the pinned session settings. Shared by the pool, the LISTEN
 * connection and pg-boss.
 */
export function connectionSettings(bounds: ConnectionBounds = defaultConnectionBounds) {
  return {
    connectionTimeoutMillis: bounds.connectTimeoutMs,
    query_timeout: bounds.statementTimeoutMs + 2_000,
    keepAlive: true,
    keepAliveInitialDelayMillis: keepAliveInitialDelayMs,
    options: sessionOptions(bounds),
  };
}

export interface PoolOptions {
  connectionString: string;
  max?: number;
  applicationName?: string;
  bounds?: ConnectionBounds;
}

export function createPool(options: PoolOptions): Pool {
  const pool = new pg.Pool({
    connectionString: options.connectionString,
    max: options.max ?? 10,
    application_name: options.applicationName ?? 'job-manager',
    idleTimeoutMillis: 30_000,
    ...connectionSettings(options.bounds),
  });
  // A connection dropped by the server (restart, failover, terminate) must not
  // crash the process: the query in flight fails on its own and the pool
  // replaces the connection. Without these listeners node-postgres would
  // raise the error as an uncaught 'error' event.
  pool.on('error', () => {});
  pool.on('connect', (client) => client.on('error', () => {}));
  return pool;
}
