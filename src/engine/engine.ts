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
import type { LiveSettings } from '../config/live-config.ts';
import type { StartUpStep } from '../db/database.ts';
import type { ConnectionBounds, Pool } from '../db/pool.ts';
import { releaseJobLeases } from '../db/sqlc/jobs_sql.ts';
import { withTimeout } from '../lib/with-timeout.ts';
import type { HealthCheck } from '../observability/health.ts';
import type { Logger } from '../observability/logger.ts';
import type { Metrics } from '../observability/metrics.ts';
import type { Tracing } from '../observability/tracing.ts';
import type { JobHandler } from './handler.ts';
import { HandlerFactory } from './handler-factory.ts';
import { RunExecutor, type RunOutcome } from './run-executor.ts';
import { parseRunRequest, type RunQueueSettings, runQueueName, startRunQueue } from './run-queue.ts';
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
  /** For pg-boss's own pool (and the scheduler's LISTEN connection unless `listenUrl` says otherwise). */
  databaseUrl: string;
  /** Where the scheduler LISTENs (a direct session); null: nowhere, it polls. Default: `databaseUrl`. */
  listenUrl?: string | null;
  /** `databaseUrl` is a transaction pooler: pg-boss's connections set only what the pooler tracks. */
  transactionPooler?: boolean;
  /** Runs a start-up step that needs the database within the start-up window (pg-boss, LISTEN); default: once. */
  startUpStep?: StartUpStep;
  /** Timeouts and session settings for those connections (the service pool's own). */
  connectionBounds?: ConnectionBounds;
  /** Handlers by name (`send-messages`, and whatever tests register). */
  handlers: Record<string, JobHandler>;
  logger: Logger;
  metrics: Metrics;
  /**
   * The live settings, when they can change while the engine runs: the engine
   * follows FETCH_INTERVAL_MS (the scheduler's poll) and WORKER_COUNT (resize).
   */
  live?: Pick<LiveSettings, 'onChange'>;
  /** Each run gets a span (a new trace), which handlers continue; default: untraced. */
  tracing?: Tracing;
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
}

function runQueueSettings(settings: EngineSettings, deps: EngineDependencies): RunQueueSettings {
  return {
    connectionString: deps.databaseUrl,
    instanceId: settings.instanceId,
    runTimeoutSeconds: settings.runTimeoutSeconds ?? 3_600,
    connectionBounds: deps.connectionBounds,
    transactionPooler: deps.transactionPooler ?? false,
  };
}

/** Builds the engine and starts pg-boss (creating its queues); `start()` begins taking work. */
export async function createEngine(settings: EngineSettings, deps: EngineDependencies): Promise<Engine> {
  const { pool, logger, metrics } = deps;
  const factory = new HandlerFactory(deps.handlers);
  const step = deps.startUpStep ?? ((_name, attempt) => attempt());
  const boss: PgBoss = await step('pg-boss', () => startRunQueue(runQueueSettings(settings, deps), logger));
  let scheduler: Scheduler | undefined;
  const executor = new RunExecutor(pool, factory, settings, logger, metrics, () => scheduler?.wake(), deps.tracing);
  const workers = new WorkerPool(
    boss,
    (run, shutdown) => executor.execute(run, shutdown),
    logger,
    () => metrics.runsRejected.inc(),
  );
  scheduler = new Scheduler(pool, boss, { ...settings, connectionBounds: deps.connectionBounds }, logger, {
    onClaimed: () => workers.notify(),
    onError: () => metrics.fetchErrors.inc(),
  });
  const theScheduler = scheduler;
  let started = false;
  deps.live?.onChange(async (next) => {
    theScheduler.setFetchInterval(next.fetchIntervalMs);
    await workers.resize(next.workerCount);
  });

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
      const listenUrl = deps.listenUrl === undefined ? deps.databaseUrl : deps.listenUrl;
      await step('listener', () => theScheduler.start(listenUrl ?? undefined));
    },
    async stop(deadline) {
      // Every step is bounded: the scheduler and the workers by the deadline
      // (plus the workers' short hand-back grace), the rest by what is left
      // until 1.2 s after it, so a hung database cannot hold the exit.
      const hardStop = deadline + 1_200;
      const step = (name: string, work: () => Promise<unknown>, boundMs: number) =>
        withTimeout(work(), Math.max(100, boundMs)).catch((error: unknown) =>
          logger.error({ err: error, step: name }, 'engine shutdown step failed'),
        );
      await step('scheduler', () => theScheduler.stop(), Math.min(2_000, deadline - Date.now()));
      if (started) await step('workers', () => workers.stop(deadline), deadline - Date.now() + 1_000);
      await step(
        'job leases',
        async () => {
          const released = (await releaseJobLeases(pool, { owner: settings.instanceId })).length;
          if (released > 0) logger.info({ released }, 'released leases of unfinished runs');
        },
        Math.min(500, hardStop - Date.now()),
      );
      const bossMs = Math.max(100, Math.min(1_000, hardStop - Date.now()));
      await step('pg-boss', () => boss.stop({ graceful: false, close: true, timeout: bossMs }), bossMs);
    },
    async runOnce() {
      const runs = await theScheduler.claimOnce();
      if (runs.length === 0) return [];
      const queued = await boss.fetch<unknown>(runQueueName, { batchSize: runs.length });
      const shutdown = { stopping: new AbortController().signal, deadline: new AbortController().signal };
      const outcomes: RunOutcome[] = [];
      for (const job of queued) {
        const parsed = parseRunRequest(job.data);
        if (!parsed.ok) {
          // Sent by hand, not by the scheduler: failed here (pg-boss may retry it); a running worker pool dead-letters it.
          await boss.fail(runQueueName, job.id, { error: `not a run: ${parsed.reason}` });
          continue;
        }
        outcomes.push(await executor.execute(parsed.run, shutdown));
        await boss.complete(runQueueName, job.id);
      }
      return outcomes;
    },
    resize: (count) => workers.resize(count),
  };
}
