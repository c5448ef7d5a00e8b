import type { Config } from '../config/config.ts';
import type { Logger } from '../observability/logger.ts';
import { type EmbeddedDatabase, startEmbeddedDatabase } from './embedded.ts';
import { createPool, type Pool } from './pool.ts';

/** The database the service talks to: DATABASE_URL, or its own embedded server. */
export interface Database {
  pool: Pool;
  url: string;
  embedded: boolean;
  close(): Promise<void>;
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
  const pool = createPool({ connectionString: url, max: 10, applicationName: `job-manager ${config.instanceId}` });
  return {
    pool,
    url,
    embedded: embedded !== undefined,
    async close() {
      await pool.end().catch(() => {});
      await embedded?.stop();
    },
  };
}
