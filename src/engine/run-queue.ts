import { PgBoss } from 'pg-boss';
import type { PoolClient } from '../db/pool.ts';
import type { Logger } from '../observability/logger.ts';

/**
 * pg-boss is the durable hand-off between the fetcher and the worker pool:
 * one queue message per job run, written in the fetcher's own transaction so
 * a claimed run and its queue entry commit (or vanish) together.
 */
export const runQueueName = 'job-runs';
export const deadRunQueueName = 'job-runs-dead';

/** What a worker needs to execute one run. */
export interface RunRequest {
  jobId: string;
  jobName: string;
  handler: string;
  batchSize: number;
  runId: string;
  /** The slot this run serves (ISO time), for lateness and logs. */
  dueAt: string;
}

export interface RunQueueSettings {
  connectionString: string;
  instanceId: string;
  /** A run not finished within this many seconds is failed by pg-boss. */
  runTimeoutSeconds: number;
}

export async function startRunQueue(settings: RunQueueSettings, logger: Logger): Promise<PgBoss> {
  const boss = new PgBoss({
    connectionString: settings.connectionString,
    schema: 'pgboss',
    application_name: `job-manager ${settings.instanceId} pg-boss`,
    max: 4,
    useListenNotify: true,
    schedule: false,
  });
  boss.on('error', (error) => logger.error({ err: error }, 'pg-boss error'));
  boss.on('warning', (warning) => logger.warn({ warning }, 'pg-boss warning'));
  await boss.start();
  await boss.createQueue(deadRunQueueName, { retentionSeconds: 14 * 86_400 });
  await boss.createQueue(runQueueName, {
    // Each run is claimed in the jobs table; pg-boss only retries a run whose
    // worker died (heartbeat lost) or whose bookkeeping failed. A retry of a run
    // that was stopped or taken over is recognised as stale and skipped.
    retryLimit: 2,
    retryDelay: 1,
    retryBackoff: true,
    heartbeatSeconds: 10,
    expireInSeconds: settings.runTimeoutSeconds,
    deleteAfterSeconds: 86_400,
    deadLetter: deadRunQueueName,
    notify: true,
  });
  return boss;
}

/** Enqueues one run inside the caller's transaction. */
export async function enqueueRun(boss: PgBoss, client: PoolClient, run: RunRequest): Promise<void> {
  await boss.send(runQueueName, run, {
    db: { executeSql: (text: string, values?: unknown[]) => client.query(text, values) },
  });
}
