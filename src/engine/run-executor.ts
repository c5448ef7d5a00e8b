import type { Pool } from '../db/pool.ts';
import { finishJobRun, renewJobLease } from '../db/sqlc/jobs_sql.ts';
import type { Logger } from '../observability/logger.ts';
import type { Metrics } from '../observability/metrics.ts';
import type { HandlerFactory } from './handler-factory.ts';
import type { RunRequest } from './run-queue.ts';

export type RunOutcome = 'ok' | 'error' | 'unknown_handler' | 'stale';

export interface RunExecutorSettings {
  instanceId: string;
  jobLeaseSeconds: number;
}

/**
 * Executes one claimed run: confirms it is still the job's current run, keeps
 * its lease alive while the handler works, and records the outcome on the job.
 * A handler's failure is the run's outcome, never the worker's: it is
 * recorded and logged, and the worker moves on.
 */
export class RunExecutor {
  readonly #pool: Pool;
  readonly #handlers: HandlerFactory;
  readonly #settings: RunExecutorSettings;
  readonly #logger: Logger;
  readonly #metrics: Metrics;
  readonly #onFinished: () => void;

  constructor(
    pool: Pool,
    handlers: HandlerFactory,
    settings: RunExecutorSettings,
    logger: Logger,
    metrics: Metrics,
    onFinished: () => void = () => {},
  ) {
    this.#pool = pool;
    this.#handlers = handlers;
    this.#settings = settings;
    this.#logger = logger;
    this.#metrics = metrics;
    this.#onFinished = onFinished;
  }

  async execute(run: RunRequest, shutdown: AbortSignal): Promise<RunOutcome> {
    const logger = this.#logger.child({ job: run.jobName, jobId: run.jobId, runId: run.runId });
    const jobId = run.jobId;
    // A queue retry of a run that was stopped or taken over meanwhile: nothing to do.
    if (!(await renewJobLease(this.#pool, { id: jobId, runId: run.runId, leaseSeconds: this.#lease() }))) {
      logger.info('run is no longer current (stopped or taken over); skipped');
      this.#metrics.jobRuns.inc({ job: run.jobName, outcome: 'stale' });
      return 'stale';
    }
    const started = performance.now();
    this.#metrics.jobTriggerLateness.observe(Math.max(0, (Date.now() - Date.parse(run.dueAt)) / 1000));
    this.#metrics.workersBusy.inc();
    const lost = new AbortController();
    const signal = AbortSignal.any([lost.signal, shutdown]);
    const renewal = this.#keepLease(run, lost, logger);
    let outcome: RunOutcome = 'ok';
    let error: string | null = null;
    try {
      const handler = this.#handlers.create(run.handler);
      const summary = await handler.run({
        jobName: run.jobName,
        runId: run.runId,
        dueAt: run.dueAt,
        batchSize: run.batchSize,
        signal,
        logger,
      });
      logger.info({ ...summary, durationMs: Math.round(performance.now() - started) }, 'run finished');
    } catch (failure) {
      outcome = (failure as Error).name === 'UnknownHandlerError' ? 'unknown_handler' : 'error';
      error = (failure as Error).message ?? String(failure);
      logger.error({ err: failure, outcome }, 'run failed');
    } finally {
      clearInterval(renewal);
      this.#metrics.workersBusy.dec();
    }
    const finished = await finishJobRun(this.#pool, { id: jobId, runId: run.runId, error });
    if (finished?.status === 'inactive') logger.info('job was stopped during the run; it stays inactive');
    this.#metrics.jobRuns.inc({ job: run.jobName, outcome });
    this.#metrics.jobRunDuration.observe({ job: run.jobName }, (performance.now() - started) / 1000);
    this.#onFinished();
    return outcome;
  }

  #lease(): number {
    return this.#settings.jobLeaseSeconds;
  }

  /** Renews the lease at a third of its length; a lost lease aborts the run's signal. */
  #keepLease(run: RunRequest, lost: AbortController, logger: Logger): NodeJS.Timeout {
    const everyMs = Math.max(200, (this.#lease() * 1000) / 3);
    return setInterval(() => {
      renewJobLease(this.#pool, { id: run.jobId, runId: run.runId, leaseSeconds: this.#lease() }).then(
        (renewed) => {
          if (!renewed && !lost.signal.aborted) {
            logger.warn('run lost its lease (job stopped or taken over); asking the handler to wind down');
            lost.abort(new Error('lease lost'));
          }
        },
        (error: unknown) => logger.warn({ err: error }, 'lease renewal failed; will retry'),
      );
    }, everyMs).unref();
  }
}
