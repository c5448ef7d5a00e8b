import type { LiveSettings } from '../config/live-config.ts';
import { retryUntilDone } from '../lib/retry.ts';
import { withTimeout } from '../lib/with-timeout.ts';
import type { HealthCheck } from '../observability/health.ts';
import type { Logger } from '../observability/logger.ts';
import { type EmbeddedDatabase, startEmbeddedDatabase } from './embedded.ts';
import { databaseErrorKind } from './errors.ts';
import { databaseHealthCheck } from './health-check.ts';
import { type MigrationReport, migrate } from './migrator.ts';
import { type ConnectionBounds, createPool, type Pool } from './pool.ts';

/** The database the service talks to: DATABASE_URL, or its own embedded server. */
export interface Database {
  pool: Pool;
  url: string;
  /** The bounds every connection to it is opened with (pool, LISTEN, pg-boss). */
  bounds: ConnectionBounds;
  embedded: boolean;
  /** The `database` readiness check (critical): one round trip; `down` on a read-only server too. */
  health: HealthCheck;
  /** Closes the pool (waiting at most until `deadline`, epoch ms, plus 1.5 s) and the embedded server. */
  close(deadline?: number): Promise<void>;
}

/**
 * Connections the service's pool may open for `workerCount` workers. A run
 * holds at most one connection at a time (a claim and an outcome write are
 * single statements; webhook calls hold none), so each worker needs one; the
 * HTTP API gets 4 and the scheduler and lease renewals 2 more. pg-boss (4)
 * and the scheduler's LISTEN connection (1) come on top, in their own pools.
 */
export function poolSizeFor(workerCount: number): number {
  return workerCount + 6;
}

/**
 * Opens the service's database: DATABASE_URL, or (unset) the embedded server
 * in DATA_DIR, started here. The pool is sized for WORKER_COUNT and follows
 * its live changes (node-postgres reads `options.max` on every checkout).
 * @throws DataDirInUseError when another process holds DATA_DIR
 */
export async function openDatabase(settings: LiveSettings, logger: Logger): Promise<Database> {
  const config = settings.current;
  let embedded: EmbeddedDatabase | undefined;
  let url = config.databaseUrl;
  if (!url) {
    embedded = await startEmbeddedDatabase(config.dataDir, logger);
    url = embedded.url;
  }
  const pool = createPool({
    connectionString: url,
    max: poolSizeFor(config.workerCount),
    applicationName: `job-manager ${config.instanceId}`,
    bounds: config.database,
  });
  settings.onChange((next) => {
    pool.options.max = poolSizeFor(next.workerCount);
  });
  return {
    pool,
    url,
    bounds: config.database,
    embedded: embedded !== undefined,
    health: databaseHealthCheck(pool),
    async close(deadline = Date.now()) {
      // A connection stuck on a hung server would hold pool.end() forever.
      const boundMs = Math.min(2_000, Math.max(100, deadline + 1_500 - Date.now()));
      await withTimeout(pool.end(), boundMs).catch(() => {});
      await embedded?.stop();
    },
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

/**
 * Runs the migrations as soon as the database answers. While it cannot be
 * reached (connection refused or timed out, starting up, authentication not
 * yet set up: `databaseErrorKind` 'unavailable') each attempt is logged and
 * retried after a pause doubling from 250 ms to 5 s, for up to
 * `startTimeoutMs` (DATABASE_START_TIMEOUT_MS; 0: one attempt). Containers
 * started together (compose, Kubernetes) usually bring the database up a few
 * seconds after the service.
 * @throws DatabaseUnreachableError when the window has passed (names host:port only)
 * @throws the migration's own error at once when it is anything else (a failing migration)
 */
export async function migrateWhenReachable(
  database: Pick<Database, 'pool' | 'url'>,
  startTimeoutMs: number,
  logger: Logger,
): Promise<MigrationReport> {
  const host = hostOf(database.url);
  const started = Date.now();
  let attempts = 0;
  try {
    return await retryUntilDone(
      () => {
        attempts += 1;
        return migrate(database.pool, logger);
      },
      {
        ...startRetry,
        giveUpAfterMs: startTimeoutMs,
        retryIf: (error) => databaseErrorKind(error) === 'unavailable',
        onRetry: (error, attempt, delayMs) =>
          logger.warn(
            { database: host, attempt, retryInMs: delayMs, reason: (error as Error).message },
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
}

/** `host:port` of a connection URL; the URL's credentials never appear. */
function hostOf(url: string): string {
  if (!URL.canParse(url)) return 'the configured DATABASE_URL';
  const parsed = new URL(url);
  return `${parsed.hostname || 'localhost'}:${parsed.port || '5432'}`;
}
