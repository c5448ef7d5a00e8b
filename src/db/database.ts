import type { Config } from '../config/config.ts';
import type { HealthCheck } from '../observability/health.ts';
import type { Logger } from '../observability/logger.ts';
import { type EmbeddedDatabase, startEmbeddedDatabase } from './embedded.ts';
import { createPool, type Pool } from './pool.ts';
import { ping } from './sqlc/health_sql.ts';

/** The database the service talks to: DATABASE_URL, or its own embedded server. */
export interface Database {
  pool: Pool;
  url: string;
  embedded: boolean;
  /** The `database` readiness check (critical): one round trip. */
  health: HealthCheck;
  close(): Promise<void>;
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
  config: Pick<Config, 'databaseUrl' | 'dataDir' | 'workerCount' | 'instanceId'>,
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
  });
  return {
    pool,
    url,
    embedded: embedded !== undefined,
    health: { name: 'database', critical: true, check: async () => ((await ping(pool)) ? 'ok' : 'down') },
    async close() {
      await pool.end().catch(() => {});
      await embedded?.stop();
    },
  };
}
