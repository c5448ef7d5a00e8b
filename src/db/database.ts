import { randomUUID } from 'node:crypto';
import pg from 'pg';
import type { LiveSettings } from '../config/live-config.ts';
import { retryUntilDone } from '../lib/retry.ts';
import { withTimeout } from '../lib/with-timeout.ts';
import type { HealthCheck } from '../observability/health.ts';
import type { Logger } from '../observability/logger.ts';
import { type EmbeddedDatabase, startEmbeddedDatabase } from './embedded.ts';
import { databaseErrorKind } from './errors.ts';
import { databaseHealthCheck } from './health-check.ts';
import type { MigrationSession } from './migrator.ts';
import { type ConnectionBounds, connectionSettings, createPool, type Pool } from './pool.ts';
import { listenSessionProbe, notifySessionProbe, unlistenSessionProbe } from './sqlc/session_sql.ts';

/** The database the service talks to: DATABASE_URL, or its own embedded server. */
export interface Database {
  pool: Pool;
  url: string;
  /** The bounds every connection to it is opened with (pool, LISTEN, pg-boss). */
  bounds: ConnectionBounds;
  embedded: boolean;
  /** DATABASE_URL is a transaction pooler (the session check failed there): see `ServicePool`. */
  transactionPooler: boolean;
  /** Where the scheduler LISTENs: DATABASE_DIRECT_URL, else DATABASE_URL when it is a session; undefined: it polls. */
  listenUrl: string | undefined;
  /**
   * A session on DATABASE_DIRECT_URL for the migrator's transaction:false
   * files; undefined without it (the migrator then takes one of the pool's).
   */
  migrationSession: (() => Promise<MigrationSession>) | undefined;
  /** Runs a later start-up step within the start-up window that began when the database was first tried. */
  startUpStep: StartUpStep;
  /** The `database` readiness check (critical): one round trip; `down` on a read-only server too. */
  health: HealthCheck;
  /** Closes the pool (waiting at most until `deadline`, epoch ms, plus 1.5 s) and the embedded server. */
  close(deadline?: number): Promise<void>;
}

/**
 * pg-boss's own pool (src/engine/run-queue.ts): the workers' fetches and
 * completions, its supervision and maintenance. Fixed; it does not grow with
 * WORKER_COUNT (one `work()` registration fetches for all workers).
 */
export const runQueuePoolMax = 4;

/**
 * The most connections one pod opens to PostgreSQL (its connection budget):
 * the main pool (DATABASE_POOL_MAX: workers, scheduler, lease renewals, the
 * API and the maintenance loops), pg-boss's pool, and the scheduler's LISTEN
 * connection when LISTEN works (a direct session). Nothing else connects:
 * pg-boss's own LISTEN is off (the pod that queues a run wakes its own
 * workers; the others poll every second).
 */
export function connectionBudget(poolMax: number, listens = true): number {
  return poolMax + runQueuePoolMax + (listens ? 1 : 0);
}

/**
 * Opens the service's database: DATABASE_URL, or (unset) the embedded server
 * in DATA_DIR, started here. The pool holds at most DATABASE_POOL_MAX
 * connections, WORKER_COUNT of them at most for the workers (a settings rule);
 * a caller that finds them all busy waits DATABASE_CONNECT_TIMEOUT_MS, then
 * gets "timeout exceeded when trying to connect" (503 on the API): a burst
 * queues instead of opening more. Its first step, "connect", is the session
 * check (`isSession`), which decides how the pool carries its settings and
 * where the scheduler LISTENs; it is retried within DATABASE_START_TIMEOUT_MS
 * like every later step (`startUpStep`).
 * @throws DataDirInUseError when another process holds DATA_DIR
 * @throws DatabaseUnreachableError when the database cannot be reached within the start-up window
 */
export async function openDatabase(settings: LiveSettings, logger: Logger): Promise<Database> {
  const config = settings.current;
  let embedded: EmbeddedDatabase | undefined;
  let url = config.databaseUrl;
  if (!url) {
    embedded = await startEmbeddedDatabase(config.dataDir, logger);
    url = embedded.url;
  }
  const startUpStep = startUpSteps(url, config.database.startTimeoutMs, logger);
  const connectionUrl = url;
  const session = await startUpStep('connect', () => isSession(connectionUrl, config.database)).catch(
    async (error: unknown) => {
      await embedded?.stop();
      throw error;
    },
  );
  const listenUrl = config.databaseDirectUrl ?? (session ? url : undefined);
  if (!session)
    logger.warn(
      { database: hostOf(url), listen: listenUrl ? 'DATABASE_DIRECT_URL' : 'none (polling)' },
      'DATABASE_URL is a transaction pooler (LISTEN does not work there): statements run in transactions that ' +
        'carry their settings' +
        (listenUrl
          ? '; the scheduler LISTENs on DATABASE_DIRECT_URL'
          : '; without DATABASE_DIRECT_URL the scheduler sees a started, stopped or new job at its next poll (FETCH_INTERVAL_MS)'),
    );
  const pool = createPool({
    connectionString: url,
    max: config.database.poolMax,
    applicationName: `job-manager ${config.instanceId}`,
    bounds: config.database,
    transactionPooler: !session,
  });
  return {
    pool,
    url,
    bounds: config.database,
    embedded: embedded !== undefined,
    transactionPooler: !session,
    listenUrl,
    migrationSession: config.databaseDirectUrl ? directSession(config.databaseDirectUrl, config.database) : undefined,
    startUpStep,
    health: databaseHealthCheck(pool),
    async close(deadline = Date.now()) {
      // A connection stuck on a hung server would hold pool.end() forever.
      const boundMs = Math.min(2_000, Math.max(100, deadline + 1_500 - Date.now()));
      await withTimeout(pool.end(), boundMs).catch(() => {});
      await embedded?.stop();
    },
  };
}

/**
 * Opens one direct session for a migration that must run outside a
 * transaction (CREATE INDEX CONCURRENTLY): connect timeout and keepalive as
 * everywhere, but no client reply timeout, since a build on a large table
 * takes minutes (the migrator turns the server's statement_timeout off for it).
 */
function directSession(url: string, bounds: ConnectionBounds): () => Promise<MigrationSession> {
  return async () => {
    const { query_timeout: _unbounded, ...settings } = connectionSettings(bounds);
    const client = new pg.Client({ connectionString: url, application_name: 'job-manager migrator', ...settings });
    client.on('error', () => {}); // a lost session fails the query in flight; the migrator retries the file
    await client.connect();
    return {
      query: client.query.bind(client) as MigrationSession['query'],
      release: () => void client.end().catch(() => {}),
    };
  };
}

/** The database could not be reached within the start-up window. `host` is `host:port`, never credentials. */
export class DatabaseUnreachableError extends Error {
  override name = 'DatabaseUnreachableError';
  readonly host: string;
  constructor(host: string, message: string, options?: ErrorOptions) {
    super(message, options);
    this.host = host;
  }
}

/** Start-up backoff: the first pause and the longest one (ms). */
const startRetry = { firstDelayMs: 250, maxDelayMs: 5_000 };

/** Runs one start-up step (see `startUpSteps`). */
export type StartUpStep = <T>(step: string, attempt: () => Promise<T>) => Promise<T>;

/**
 * The start-up window, shared by every step that needs the database (connect
 * and migrate, pg-boss, the LISTEN connection). While a step fails because the
 * database cannot serve yet (refused or timed-out connections, starting up,
 * "too many clients" and the rest of SQLSTATE class 53, authentication not yet
 * set up: `databaseErrorKind` 'unavailable') each attempt is logged and
 * retried after a pause doubling from 250 ms to 5 s, until
 * `startTimeoutMs` (DATABASE_START_TIMEOUT_MS; 0: one attempt) after the first
 * step began. Containers started together usually bring the database up a few
 * seconds after the service, and a pod started into a full server waits for
 * a slot instead of exiting.
 * @returns a runner; it throws DatabaseUnreachableError when the window has passed (names host:port only),
 *   and a step's own error at once when it is anything else (a failing migration)
 */
export function startUpSteps(url: string, startTimeoutMs: number, logger: Logger): StartUpStep {
  const host = hostOf(url);
  const started = Date.now();
  return async (step, attempt) => {
    let attempts = 0;
    try {
      return await retryUntilDone(
        () => {
          attempts += 1;
          return attempt();
        },
        {
          ...startRetry,
          giveUpAfterMs: Math.max(0, startTimeoutMs - (Date.now() - started)),
          retryIf: (error) => databaseErrorKind(error) === 'unavailable',
          onRetry: (error, tries, delayMs) =>
            logger.warn(
              { database: host, step, attempt: tries, retryInMs: delayMs, reason: (error as Error).message },
              `database at ${host} not reachable yet; retrying`,
            ),
        },
      );
    } catch (error) {
      if (databaseErrorKind(error) !== 'unavailable') throw error;
      throw new DatabaseUnreachableError(
        host,
        `the database at ${host} is unreachable after ${Date.now() - started} ms (${attempts} attempts, ` +
          `DATABASE_START_TIMEOUT_MS=${startTimeoutMs}): ${(error as Error).message}`,
        { cause: error },
      );
    }
  };
}

/** How long the session check waits for its own notification (ms). */
const sessionProbeTimeoutMs = 2_000;

/**
 * Whether `url` is a real session (PostgreSQL, or a pooler in session mode)
 * or a transaction pooler: one connection LISTENs, a second one NOTIFYs, and
 * the first waits up to 2 s. Through a transaction pooler (PgBouncer) the
 * LISTEN is left on a server connection that is not linked to the listening
 * client while it waits, so the notification never reaches it. Session
 * features (LISTEN, a `SET` that lasts) are used only where this is true.
 * @throws a connection error (the start-up step retries it)
 */
export async function isSession(url: string, bounds: ConnectionBounds): Promise<boolean> {
  const open = async () => {
    const client = new pg.Client({
      connectionString: url,
      application_name: 'job-manager session check',
      ...connectionSettings(bounds),
    });
    client.on('error', () => {});
    await client.connect().catch(async (error: unknown) => {
      await client.end().catch(() => {});
      throw error;
    });
    return client;
  };
  const listener = await open();
  try {
    const token = randomUUID();
    const heard = new Promise<boolean>((resolve) => {
      listener.on('notification', (message) => message.payload === token && resolve(true));
      setTimeout(() => resolve(false), sessionProbeTimeoutMs).unref();
    });
    await listenSessionProbe(listener);
    const notifier = await open();
    await notifySessionProbe(notifier, { token }).finally(() => notifier.end().catch(() => {}));
    const session = await heard;
    if (!session) await unlistenSessionProbe(listener);
    return session;
  } finally {
    await listener.end().catch(() => {});
  }
}

/** `host:port` of a connection URL; the URL's credentials never appear. */
function hostOf(url: string): string {
  if (!URL.canParse(url)) return 'the configured DATABASE_URL';
  const parsed = new URL(url);
  return `${parsed.hostname || 'localhost'}:${parsed.port || '5432'}`;
}
