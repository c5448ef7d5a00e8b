/**
 * The job engine behind one facade: the scheduler (the "fetcher") claims due
 * jobs and queues one pg-boss message per run, the worker pool takes runs off
 * the queue, the run executor runs each through the handler factory. Nothing
 * outside this folder knows these classes.
 *
 *   scheduler --(pg-boss job-runs, same transaction as the claim)--> worker pool
 *     --> run executor --> handler factory --> handler (e.g. send-messages)
 */
import type { PgBoss } from 'pg-boss';
import type { Pool } from '../db/pool.ts';
import { releaseJobLeases } from '../db/sqlc/jobs_sql.ts';
import type { HealthCheck } from '../observability/health.ts';
import type { Logger } from '../observability/logger.ts';
import type { Metrics } from '../observability/metrics.ts';
import type { JobHandler } from './handler.ts';
import { HandlerFactory } from './handler-factory.ts';
import { RunExecutor, type RunOutcome } from './run-executor.ts';
import { runQueueName, startRunQueue } from './run-queue.ts';
import { Scheduler } from './scheduler.ts';
import { WorkerPool } from './worker-pool.ts';

export type { JobHandler, RunContext, RunSummary } from './handler.ts';
export type { RunOutcome } from './run-executor.ts';

export interface EngineSettings {
  /** Lease owner and pg-boss application name. */
  instanceId: string;
  /** The scheduler's safety-net poll (ms). */
  fetchIntervalMs: number;
  /** How long a claimed run stays this pod's without renewal (s). */
  jobLeaseSeconds: number;
  /** Runs executing at once on this pod. */
  workerCount: number;
  /** pg-boss fails a run still executing after this long (s). Default 3600. */
  runTimeoutSeconds?: number;
}

export interface EngineDependencies {
  pool: Pool;
  /** For pg-boss's own pool and the scheduler's LISTEN connection. */
  databaseUrl: string;
  /** Handlers by name (`send-messages`, and whatever tests register). */
  handlers: Record<string, JobHandler>;
  logger: Logger;
  metrics: Metrics;
}

export interface Engine {
  /** Handler names the engine can run; the job service validates new jobs against it. */
  readonly handlers: Pick<HandlerFactory, 'has' | 'names'>;
  /** The `queue` readiness check (critical). */
  readonly health: HealthCheck;
  /** Starts the worker pool, then the scheduler loop. */
  start(): Promise<void>;
  /**
   * Stops scheduling, lets runs in flight finish until `deadline` (epoch ms),
   * then aborts them; hands this pod's unfinished job leases back and stops
   * pg-boss. Never throws.
   */
  stop(deadline: number): Promise<void>;
  /**
   * For tests and tools, on an engine that was not started: one scheduling
   * round, then every run it queued, executed here. Resolves with their outcomes.
   */
  runOnce(): Promise<RunOutcome[]>;
  /** A new WORKER_COUNT; the pod keeps taking runs while the old registration drains. */
  resize(workerCount: number): Promise<void>;
  /** A new FETCH_INTERVAL_MS. */
  setFetchInterval(ms: number): void;
}

/** Builds the engine and starts pg-boss (creating its queues); `start()` begins taking work. */
export async function createEngine(settings: EngineSettings, deps: EngineDependencies): Promise<Engine> {
  const { pool, logger, metrics } = deps;
  const factory = new HandlerFactory(deps.handlers);
  const boss: PgBoss = await startRunQueue(
    {
      connectionString: deps.databaseUrl,
      instanceId: settings.instanceId,
      runTimeoutSeconds: settings.runTimeoutSeconds ?? 3_600,
    },
    logger,
  );
  let scheduler: Scheduler | undefined;
  const executor = new RunExecutor(pool, factory, settings, logger, metrics, () => scheduler?.wake());
  const workers = new WorkerPool(boss, (run, shutdown) => executor.execute(run, shutdown), logger);
  scheduler = new Scheduler(pool, boss, settings, logger, {
    onClaimed: () => workers.notify(),
    onError: () => metrics.fetchErrors.inc(),
  });
  const theScheduler = scheduler;
  let started = false;

  return {
    handlers: factory,
    health: {
      name: 'queue',
      critical: true,
      async check() {
        await boss.getQueue(runQueueName);
        return 'ok';
      },
    },
    async start() {
      started = true;
      await workers.start(settings.workerCount);
      await theScheduler.start(deps.databaseUrl);
    },
    async stop(deadline) {
      const step = (name: string, work: () => Promise<unknown>) =>
        work().catch((error: unknown) => logger.error({ err: error, step: name }, 'engine shutdown step failed'));
      await step('scheduler', () => theScheduler.stop());
      if (started) await step('workers', () => workers.stop(deadline));
      await step('job leases', async () => {
        const released = (await releaseJobLeases(pool, { owner: settings.instanceId })).length;
        if (released > 0) logger.info({ released }, 'released leases of unfinished runs');
      });
      await step('pg-boss', () => boss.stop({ graceful: false, close: true, timeout: 5_000 }));
    },
    async runOnce() {
      const runs = await theScheduler.claimOnce();
      if (runs.length === 0) return [];
      const queued = await boss.fetch<(typeof runs)[number]>(runQueueName, { batchSize: runs.length });
      const shutdown = new AbortController().signal;
      const outcomes: RunOutcome[] = [];
      for (const job of queued) {
        outcomes.push(await executor.execute(job.data, shutdown));
        await boss.complete(runQueueName, job.id);
      }
      return outcomes;
    },
    resize: (count) => workers.resize(count),
    setFetchInterval: (ms) => theScheduler.setFetchInterval(ms),
  };
}
