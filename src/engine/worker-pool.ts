import type { PgBoss } from 'pg-boss';
import type { Logger } from '../observability/logger.ts';
import { type RunRequest, runQueueName } from './run-queue.ts';

/** Executes one run; the pool calls it for every queue message it takes. */
export type RunWorker = (run: RunRequest, shutdown: AbortSignal) => Promise<unknown>;

/**
 * The worker pool is pg-boss's `work()` on the run queue with a
 * `localConcurrency` of WORKER_COUNT. Resizing registers the new worker first
 * and drains the old one in the background, so the pod never stops taking
 * runs (while the old worker drains, up to old-in-flight + new count runs may
 * execute at once).
 */
export class WorkerPool {
  readonly #boss: PgBoss;
  readonly #work: RunWorker;
  readonly #logger: Logger;
  readonly #shutdown = new AbortController();
  #count = 0;
  #workerId: string | undefined;
  readonly #draining = new Set<Promise<void>>();

  constructor(boss: PgBoss, work: RunWorker, logger: Logger) {
    this.#boss = boss;
    this.#work = work;
    this.#logger = logger.child({ component: 'workers' });
  }

  get count(): number {
    return this.#count;
  }

  async start(count: number): Promise<void> {
    this.#count = count;
    this.#workerId = await this.#register(count);
    this.#logger.info({ workers: count }, 'worker pool started');
  }

  /** A new concurrency: the new registration starts taking runs before the old one drains. */
  async resize(count: number): Promise<void> {
    if (count === this.#count || this.#workerId === undefined) return;
    this.#logger.info({ from: this.#count, to: count }, 'resizing worker pool');
    const old = this.#workerId;
    this.#workerId = await this.#register(count);
    this.#count = count;
    const drain = this.#boss
      .offWork(runQueueName, { id: old, wait: true })
      .catch((error: unknown) => this.#logger.warn({ err: error }, 'draining the old worker failed'))
      .finally(() => this.#draining.delete(drain));
    this.#draining.add(drain);
  }

  /**
   * Stops taking runs and waits for the ones in flight; at `deadline` (epoch
   * ms) their shutdown signal aborts so they hand their work back.
   */
  async stop(deadline: number): Promise<void> {
    const abortLater = setTimeout(
      () => this.#shutdown.abort(new Error('shutting down')),
      Math.max(0, deadline - Date.now()),
    );
    try {
      await this.#boss.offWork(runQueueName, { wait: true });
      await Promise.all(this.#draining);
    } finally {
      clearTimeout(abortLater);
    }
  }

  /** Wakes this pod's workers (after its scheduler queued runs). */
  notify(): void {
    if (this.#workerId) this.#boss.notifyWorker(this.#workerId);
  }

  #register(count: number): Promise<string> {
    return this.#boss.work<RunRequest>(
      runQueueName,
      { localConcurrency: count, batchSize: 1, pollingIntervalSeconds: 1, notifyPollingIntervalSeconds: 5 },
      async ([job]) => {
        if (job) await this.#work(job.data, this.#shutdown.signal);
      },
    );
  }
}
