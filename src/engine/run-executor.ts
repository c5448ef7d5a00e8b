import type { Pool } from '../db/pool.ts';
import { beginJobExecution, finishJobRun, renewJobLease } from '../db/sqlc/jobs_sql.ts';
import { retryUntilDone } from '../lib/retry.ts';
import type { Logger } from '../observability/logger.ts';
import type { Metrics } from '../observability/metrics.ts';
import { logFieldsOf, type Tracing, untraced } from '../observability/tracing.ts';
import type { HandlerFactory } from './handler-factory.ts';
import type { RunRequest } from './run-queue.ts';
import type { ShutdownSignals } from './worker-pool.ts';

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
  readonly #tracing: Tracing;

  constructor(
    pool: Pool,
    handlers: HandlerFactory,
    settings: RunExecutorSettings,
    logger: Logger,
    metrics: Metrics,
    onFinished: () => void = () => {},
    tracing: Tracing = untraced,
  ) {
    this.#tracing = tracing;
    this.#pool = pool;
    this.#handlers = handlers;
    this.#settings = settings;
    this.#logger = logger;
    this.#metrics = metrics;
    this.#onFinished = onFinished;
  }

  /**
   * Executes `run` once, fenced: it starts only while the run is the job's
   * current one and no other execution holds a live lease on it (a pg-boss
   * retry of a run whose first execution is only frozen is skipped as
   * 'stale'). The execution id it gets is named by every lease renewal,
   * message claim and the run's end, so once superseded (stopped, taken over)
   * it claims nothing more and leaves the job's bookkeeping alone.
   */
  async execute(run: RunRequest, shutdown: ShutdownSignals): Promise<RunOutcome> {
    const logger = this.#logger.child({ job: run.jobName, jobId: run.jobId, runId: run.runId });
    const jobId = run.jobId;
    const begun = await beginJobExecution(this.#pool, {
      id: jobId,
      runId: run.runId,
      owner: this.#settings.instanceId,
      leaseSeconds: this.#lease(),
    });
    if (!begun) {
      // A queue retry of a run that was stopped or taken over meanwhile, or whose
      // first execution still holds its lease (frozen, not dead): nothing to do.
      logger.info('run is no longer current or another execution holds it; skipped');
      this.#metrics.jobRuns.inc({ job: run.jobName, outcome: 'stale' });
      return 'stale';
    }
    const { executionId } = begun;
    // A run is a trace of its own; the messages it delivers keep theirs and link to it.
    const span = this.#tracing.startSpan(`run ${run.jobName}`, {
      kind: 'consumer',
      attributes: {
        'job_manager.job.name': run.jobName,
        'job_manager.job.handler': run.handler,
        'job_manager.run.id': run.runId,
        'job_manager.execution.id': executionId,
      },
    });
    // On the run's own lines only: the handler's lines carry the ids of their own spans (a child logger's
    // bindings and a line's fields would both be written, two `traceId` keys in one JSON object).
    const traced = logFieldsOf(span.context);
    const started = performance.now();
    this.#metrics.jobTriggerLateness.observe(Math.max(0, (Date.now() - Date.parse(run.dueAt)) / 1000));
    this.#metrics.workersBusy.inc();
    const lost = new AbortController();
    const signal = AbortSignal.any([lost.signal, shutdown.stopping]);
    const renewal = this.#keepLease(jobId, executionId, lost, logger);
    let outcome: RunOutcome = 'ok';
    let error: string | null = null;
    try {
      const handler = this.#handlers.create(run.handler);
      const summary = await handler.run({
        jobName: run.jobName,
        runId: run.runId,
        executionId,
        dueAt: run.dueAt,
        batchSize: run.batchSize,
        signal,
        deadline: shutdown.deadline,
        logger,
        trace: span.context,
      });
      if (summary)
        span.setAttributes(Object.fromEntries(Object.entries(summary).map(([k, v]) => [`job_manager.run.${k}`, v])));
      logger.info({ ...summary, ...traced, durationMs: Math.round(performance.now() - started) }, 'run finished');
    } catch (failure) {
      outcome = (failure as Error).name === 'UnknownHandlerError' ? 'unknown_handler' : 'error';
      error = (failure as Error).message ?? String(failure);
      span.fail(error);
      logger.error({ err: failure, outcome, ...traced }, 'run failed');
    } finally {
      span.end();
      clearInterval(renewal);
      this.#metrics.workersBusy.dec();
    }
    // The end is retried while the database is unreachable, for as long as the
    // lease lasts: after that another pod has taken the run over anyway.
    const finished = await retryUntilDone(
      () => finishJobRun(this.#pool, { id: jobId, runId: run.runId, executionId, error }),
      {
        signal: shutdown.deadline,
        giveUpAfterMs: this.#lease() * 1000,
        onRetry: (failure, attempt) =>
          attempt === 1 && logger.warn({ err: failure }, 'could not record the end of the run; retrying'),
      },
    );
    if (finished?.status === 'inactive') logger.info('job was stopped during the run; it stays inactive');
    else if (!finished) logger.info('run was superseded (stopped or taken over); the job was left as it is');
    this.#metrics.jobRuns.inc({ job: run.jobName, outcome });
    this.#metrics.jobRunDuration.observe({ job: run.jobName }, (performance.now() - started) / 1000);
    this.#onFinished();
    return outcome;
  }

  #lease(): number {
    return this.#settings.jobLeaseSeconds;
  }

  /** Renews the lease at a third of its length; a lost lease (superseded execution) aborts the run's signal. */
  #keepLease(jobId: string, executionId: string, lost: AbortController, logger: Logger): NodeJS.Timeout {
    const everyMs = Math.max(200, (this.#lease() * 1000) / 3);
    return setInterval(() => {
      renewJobLease(this.#pool, { id: jobId, executionId, leaseSeconds: this.#lease() }).then(
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
