import type { Config } from '../config/config.ts';
import { withTimeout } from '../lib/with-timeout.ts';
import type { HealthCheck } from '../observability/health.ts';
import type { Logger } from '../observability/logger.ts';
import { type EmbeddedDatabase, startEmbeddedDatabase } from './embedded.ts';
import { type ConnectionBounds, createPool, defaultConnectionBounds, type Pool } from './pool.ts';
import { ping } from './sqlc/health_sql.ts';

/** The database the service talks to: DATABASE_URL, or its own embedded server. */
export interface Database {
  pool: Pool;
  url: string;
  /** The bounds every connection to it is opened with (pool, LISTEN, pg-boss). */
  bounds: ConnectionBounds;
  embedded: boolean;
  /** The `database` readiness check (critical): one round trip. */
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

/** Applies a new WORKER_COUNT to the pool's size (node-postgres reads `options.max` on every checkout). */
export function resizePool(pool: Pool, workerCount: number): void {
  pool.options.max = poolSizeFor(workerCount);
}

export async function openDatabase(
  config: Pick<Config, 'databaseUrl' | 'dataDir' | 'workerCount' | 'instanceId'> & Partial<Pick<Config, 'database'>>,
  logger: Logger,
): Promise<Database> {
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
  return {
    pool,
    url,
    bounds: config.database ?? defaultConnectionBounds,
    embedded: embedded !== undefined,
    health: { name: 'database', critical: true, check: async () => ((await ping(pool)) ? 'ok' : 'down') },
    async close(deadline = Date.now()) {
      // A connection stuck on a hung server would hold pool.end() forever.
      const boundMs = Math.min(2_000, Math.max(100, deadline + 1_500 - Date.now()));
      await withTimeout(pool.end(), boundMs).catch(() => {});
      await embedded?.stop();
    },
  };
}
