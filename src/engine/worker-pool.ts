import type { PgBoss } from 'pg-boss';
import type { Logger } from '../observability/logger.ts';
import { type RunRequest, runQueueName } from './run-queue.ts';

/** How a pod's shutdown reaches the runs in flight. */
export interface ShutdownSignals {
  /** Aborted when shutdown begins: claim no more work, finish what is in hand. */
  stopping: AbortSignal;
  /** Aborted at the shutdown deadline: abort requests in flight and hand their work back. */
  deadline: AbortSignal;
}

/** Executes one run; the pool calls it for every queue message it takes. */
export type RunWorker = (run: RunRequest, shutdown: ShutdownSignals) => Promise<unknown>;

/** After the deadline, runs get this long (ms) to hand their work back before stop() moves on. */
export const handBackGraceMs = 700;

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
  readonly #stopping = new AbortController();
  readonly #deadline = new AbortController();
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
   * Stops taking runs and tells the ones in flight to claim nothing more; at
   * `deadline` (epoch ms) their deadline signal aborts so they abort their
   * requests and hand their work back. Resolves when they have finished, or
   * `handBackGraceMs` after the deadline at the latest.
   */
  async stop(deadline: number): Promise<void> {
    this.#stopping.abort(new Error('shutting down'));
    const untilDeadline = Math.max(0, deadline - Date.now());
    const abortLater = setTimeout(() => this.#deadline.abort(new Error('shutdown deadline')), untilDeadline);
    let giveUp: NodeJS.Timeout | undefined;
    const late = new Promise<void>((resolve) => {
      giveUp = setTimeout(() => {
        this.#logger.warn('runs still busy after the shutdown deadline; stopping without them');
        resolve();
      }, untilDeadline + handBackGraceMs);
    });
    try {
      await Promise.race([
        (async () => {
          await this.#boss.offWork(runQueueName, { wait: true });
          await Promise.all(this.#draining);
        })(),
        late,
      ]);
    } finally {
      clearTimeout(abortLater);
      clearTimeout(giveUp);
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
        if (job) await this.#work(job.data, { stopping: this.#stopping.signal, deadline: this.#deadline.signal });
      },
    );
  }
}
