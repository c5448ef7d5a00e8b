import { PgBoss } from 'pg-boss';
import { z } from 'zod';
import { runQueuePoolMax } from '../db/database.ts';
import {
  type ConnectionBounds,
  connectionSettings,
  connectionSetup,
  defaultConnectionBounds,
  type PoolClient,
} from '../db/pool.ts';
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

// Unknown fields are ignored: a newer pod's runs stay readable by an older one during a rolling deploy.
const runRequestSchema = z.object({
  jobId: z.string().regex(/^[1-9][0-9]{0,18}$/, 'must be a job id (decimal digits)'),
  jobName: z.string().min(1),
  handler: z.string().min(1),
  batchSize: z.int().min(1).max(2_147_483_647),
  runId: z.uuid(),
  dueAt: z.iso.datetime({ offset: true }),
});

/**
 * Checks a queue message's data before a worker acts on it. Only the
 * scheduler writes well-formed runs; anything else was put on the queue by
 * hand (pg-boss dashboard "Send Job", SQL) and would fail in the database
 * (22P02) or the executor (TypeError) on every retry.
 * @returns the run, or `reason` naming the first bad field (never the payload itself)
 */
export function parseRunRequest(data: unknown): { ok: true; run: RunRequest } | { ok: false; reason: string } {
  const parsed = runRequestSchema.safeParse(data);
  if (parsed.success) return { ok: true, run: parsed.data };
  const issue = parsed.error.issues[0]!;
  const field = issue.path.length > 0 ? `${issue.path.join('.')}: ` : '';
  return { ok: false, reason: `${field}${issue.message.replace(/^Invalid input: /, '')}` };
}

export interface RunQueueSettings {
  connectionString: string;
  instanceId: string;
  /** A run not finished within this many seconds is failed by pg-boss. */
  runTimeoutSeconds: number;
  /** Bounds and session settings for pg-boss's connections (its pool passes them to node-postgres). */
  connectionBounds?: ConnectionBounds;
  /** `connectionString` is a transaction pooler: its connections set only what the pooler tracks (see db/pool.ts). */
  transactionPooler?: boolean;
}

/** SQLSTATEs of a schema object created by another session at the same moment: unique_violation, duplicate_schema, duplicate_table, duplicate_object. */
const installRaceCodes = new Set(['23505', '42P06', '42P07', '42710']);

/**
 * A started pg-boss; a failed start closes what it opened. Pods started at
 * once on a new database each install pg-boss's schema: `CREATE ... IF NOT
 * EXISTS` is not atomic against another session creating the same object, so
 * the loser can get a catalog unique violation (`pg_namespace_nspname_index`),
 * which pg-boss passes on (it expects only "already exists"). The winner's
 * install then stands, and starting again finds it: up to `attempts` starts.
 * @throws the start's error when it is not such a race, or on the last attempt
 */
async function startedBoss(
  options: ConstructorParameters<typeof PgBoss>[0],
  logger: Logger,
  attempts = 3,
): Promise<PgBoss> {
  const boss = new PgBoss(options);
  boss.on('error', (error) => logger.error({ err: error }, 'pg-boss error'));
  boss.on('warning', (warning) => logger.warn({ warning }, 'pg-boss warning'));
  try {
    await boss.start();
    return boss;
  } catch (error) {
    await boss.stop({ graceful: false, close: true, timeout: 1_000 }).catch(() => {});
    const code = (error as { code?: string }).code;
    if (attempts <= 1 || code === undefined || !installRaceCodes.has(code)) throw error;
    logger.info(
      { reason: (error as Error).message },
      "another pod installed pg-boss's schema at the same moment; starting again",
    );
    return startedBoss(options, logger, attempts - 1);
  }
}

/**
 * Starts pg-boss on its own pool of `runQueuePoolMax` connections. It works
 * through PgBouncer in transaction mode as it is (its locks are transaction
 * advisory locks, its timeouts `SET LOCAL`, its statements unnamed), except
 * LISTEN, which is off: the pod whose scheduler queues a run wakes its own
 * workers (`notifyWorker`), the others poll every second, so a LISTEN
 * connection per pod would buy nothing. A failed start closes what it opened
 * (the start-up step retries it).
 */
export async function startRunQueue(settings: RunQueueSettings, logger: Logger): Promise<PgBoss> {
  // pg-boss hands its options to pg.Pool as they are, so the same connect and
  // reply timeouts and keepalive apply to its pool. Its connections stay
  // bounded through an outage: the pool never opens more than `max`, and
  // destroys a connection whose query failed (pg-pool releases it with the error).
  const options = {
    connectionString: settings.connectionString,
    schema: 'pgboss',
    application_name: `job-manager ${settings.instanceId} pg-boss`,
    max: runQueuePoolMax,
    useListenNotify: false,
    schedule: false,
    // How often pg-boss looks for runs whose worker stopped heartbeating (default 60 s).
    superviseIntervalSeconds: 10,
    ...connectionSettings(settings.connectionBounds),
    // The service's session settings on each of its connections too (pg-boss hands this to pg.Pool as it is).
    onConnect: connectionSetup(
      settings.connectionBounds ?? defaultConnectionBounds,
      settings.transactionPooler ?? false,
    ),
  } as ConstructorParameters<typeof PgBoss>[0];
  // pg-boss's own retention (its rows are not messages; MESSAGE_RETENTION_DAYS
  // does not touch them). Its supervisor (every superviseIntervalSeconds, one
  // pod at a time by pg-boss's own lock) deletes, per queue, at most once per
  // maintenanceIntervalSeconds (pg-boss's default, 24 h):
  //   * job-runs: a run 1 day after it completed or failed (deleteAfterSeconds
  //     below); one queued but never started after 14 days (retentionSeconds,
  //     pg-boss's default);
  //   * job-runs-dead: a dead-lettered run 14 days after it arrived
  //     (retentionSeconds) or 7 days after it was completed (pg-boss's default
  //     deleteAfterSeconds);
  //   * its warnings and queue statistics after 7 days (its defaults).
  // So pgboss.job holds at most about two days of runs: 1,440 a day per job
  // on a 60 s interval, whatever the message volume (a run sends many messages).
  const boss = await startedBoss(options, logger);
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
    notify: false,
  });
  return boss;
}

/** Enqueues one run inside the caller's transaction. */
export async function enqueueRun(boss: PgBoss, client: PoolClient, run: RunRequest): Promise<void> {
  await boss.send(runQueueName, run, {
    db: { executeSql: (text: string, values?: unknown[]) => client.query(text, values) },
  });
}
