import type { PgBoss } from 'pg-boss';
import { type RunRequest, runQueueName } from '../jobs/run-queue.ts';
import type { Logger } from '../observability/logger.ts';
import type { RunExecutor } from './run-executor.ts';

/**
 * The worker pool is pg-boss's work() on the run queue with a concurrency of
 * WORKER_COUNT. Changing the count re-registers the workers; runs in flight
 * finish first.
 */
export class WorkerPool {
  readonly #boss: PgBoss;
  readonly #executor: RunExecutor;
  readonly #logger: Logger;
  readonly #shutdown = new AbortController();
  #count = 0;
  #workerId: string | undefined;

  constructor(boss: PgBoss, executor: RunExecutor, logger: Logger) {
    this.#boss = boss;
    this.#executor = executor;
    this.#logger = logger.child({ component: 'workers' });
  }

  get count(): number {
    return this.#count;
  }

  async start(count: number): Promise<void> {
    this.#count = count;
    this.#workerId = await this.#boss.work<RunRequest>(
      runQueueName,
      { localConcurrency: count, batchSize: 1, pollingIntervalSeconds: 1, notifyPollingIntervalSeconds: 5 },
      async ([job]) => {
        if (job) await this.#executor.execute(job.data, this.#shutdown.signal);
      },
    );
    this.#logger.info({ workers: count }, 'worker pool started');
  }

  async resize(count: number): Promise<void> {
    if (count === this.#count) return;
    this.#logger.info({ from: this.#count, to: count }, 'resizing worker pool');
    await this.#boss.offWork(runQueueName, { wait: true });
    await this.start(count);
  }

  /** Stops taking runs; in-flight runs get `timeoutMs` to finish before their signal aborts. */
  async stop(timeoutMs: number): Promise<void> {
    const abortLater = setTimeout(() => this.#shutdown.abort(new Error('shutting down')), timeoutMs);
    try {
      await this.#boss.offWork(runQueueName, { wait: true });
    } finally {
      clearTimeout(abortLater);
    }
  }

  /** Wakes this pod's workers (after its fetcher queued runs). */
  notify(): void {
    if (this.#workerId) this.#boss.notifyWorker(this.#workerId);
  }
}
