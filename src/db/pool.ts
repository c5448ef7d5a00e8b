import pg from 'pg';
import { usePreparedStatements } from './prepared-statements.ts';
import { withTransaction } from './transaction.ts';

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
 * The settings every statement of the service runs under: ISO dates in UTC
 * (node-postgres parses timestamps in that form), the standard interval
 * format, and the statement timeouts. None goes in the start-up packet's
 * `options`, which PgBouncer refuses with its default settings.
 */
function sessionSettings(bounds: ConnectionBounds): Array<[string, string]> {
  return [
    ['DateStyle', "'ISO, MDY'"],
    ['TimeZone', "'UTC'"],
    ['IntervalStyle', "'postgres'"],
    ['statement_timeout', String(bounds.statementTimeoutMs)],
    ['idle_in_transaction_session_timeout', String(Math.max(idleInTransactionTimeoutMs, bounds.statementTimeoutMs))],
  ];
}

/**
 * PgBouncer tracks these two (with client_encoding, standard_conforming_strings
 * and application_name): it remembers them per client and sets them on
 * whichever server connection serves that client, so a `SET` of them holds in
 * transaction pooling too. The others it cannot track.
 */
const trackedByPoolers = new Set(['DateStyle', 'TimeZone']);

/**
 * What runs on a new connection before the pool hands it out: every setting
 * (`SET`) on a real session; through a transaction pooler only the two it
 * tracks, since a `SET` of the others would stay on one server connection and
 * reach whichever client gets it next.
 */
export function connectionSetupSql(bounds: ConnectionBounds, transactionPooler: boolean): string {
  return sessionSettings(bounds)
    .filter(([name]) => !transactionPooler || trackedByPoolers.has(name))
    .map(([name, value]) => `SET ${name} = ${value}`)
    .join('; ');
}

/**
 * What opens every transaction of the service's pool, in one round trip: the
 * settings a pooler cannot track, as `SET LOCAL`, so they hold for exactly
 * this transaction whichever server connection runs it, and never leak to the
 * next client of that connection. (On a real session they are already set;
 * repeating them costs no round trip.)
 */
export function beginStatement(bounds: ConnectionBounds = defaultConnectionBounds): string {
  const local = sessionSettings(bounds).filter(([name]) => !trackedByPoolers.has(name));
  return ['BEGIN', ...local.map(([name, value]) => `SET LOCAL ${name} = ${value}`)].join('; ');
}

/**
 * node-postgres's `onConnect` hook (awaited before the pool hands a new
 * connection out; a failure ends it and fails that checkout) running
 * `connectionSetupSql`. The service's pool and pg-boss's use it.
 */
export function connectionSetup(bounds: ConnectionBounds, transactionPooler: boolean) {
  const sql = connectionSetupSql(bounds, transactionPooler);
  return async (client: pg.ClientBase): Promise<void> => {
    await client.query(sql);
  };
}

/**
 * node-postgres settings that bound every call on a connection: a connect
 * timeout (also how long a checkout waits for a busy pool), a client-side
 * reply timeout (query_timeout, so a half-open connection whose server will
 * never answer is given up on and replaced), and TCP keepalive. Shared by the
 * pool, the LISTEN connection and pg-boss.
 */
export function connectionSettings(bounds: ConnectionBounds = defaultConnectionBounds) {
  return {
    connectionTimeoutMillis: bounds.connectTimeoutMs,
    query_timeout: bounds.statementTimeoutMs + 2_000,
    keepAlive: true,
    keepAliveInitialDelayMillis: keepAliveInitialDelayMs,
  };
}

export interface PoolOptions {
  connectionString: string;
  max?: number;
  applicationName?: string;
  bounds?: ConnectionBounds;
  /**
   * `connectionString` is a transaction pooler (PgBouncer in transaction
   * mode), not a session: see `ServicePool`. Default false.
   */
  transactionPooler?: boolean;
}

/**
 * The service's pool: node-postgres's, with the session settings carried so
 * they hold on a real session and through a transaction pooler alike. Each
 * new connection runs `connectionSetupSql` before its first statement; every
 * transaction opens with `begin` (`withTransaction`). Through a transaction
 * pooler `query()`, a statement on its own, runs as a transaction of its own,
 * so its timeouts hold too (two more round trips than a bare statement); on a
 * session it is node-postgres's own. A statement PostgreSQL refuses inside a
 * transaction block (VACUUM, CREATE INDEX CONCURRENTLY) takes a client with
 * `connect()` and sets what it needs itself.
 */
export class ServicePool extends pg.Pool {
  /** The statement that opens a transaction on this pool, settings included (`beginStatement`). */
  readonly begin: string;
  readonly transactionPooler: boolean;

  constructor(config: pg.PoolConfig, bounds: ConnectionBounds, transactionPooler: boolean) {
    super({ ...config, onConnect: connectionSetup(bounds, transactionPooler) });
    this.begin = beginStatement(bounds);
    this.transactionPooler = transactionPooler;
    if (transactionPooler) {
      // Replaces the inherited query() on the instance, so node-postgres's typed overloads stay.
      const query = (text: unknown, values?: unknown) => {
        if (typeof values === 'function') throw new TypeError('ServicePool.query takes no callback');
        return withTransaction(this, (client) => client.query(text as string, values as unknown[]));
      };
      this.query = query as pg.Pool['query'];
    }
  }
}

export type Pool = ServicePool;

export function createPool(options: PoolOptions): Pool {
  const bounds = options.bounds ?? defaultConnectionBounds;
  const pool = new ServicePool(
    {
      connectionString: options.connectionString,
      max: options.max ?? 10,
      application_name: options.applicationName ?? 'job-manager',
      idleTimeoutMillis: 30_000,
      ...connectionSettings(bounds),
    },
    bounds,
    options.transactionPooler ?? false,
  );
  // A connection dropped by the server (restart, failover, terminate) must not
  // crash the process: the query in flight fails on its own and the pool
  // replaces the connection. Without these listeners node-postgres would
  // raise the error as an uncaught 'error' event.
  pool.on('error', () => {});
  pool.on('connect', (client) => client.on('error', () => {}));
  // The hot statements parsed and planned once per connection (prepared-statements.ts); a pooler keeps them unnamed.
  if (!pool.transactionPooler) pool.on('connect', (client) => usePreparedStatements(client));
  return pool;
}
