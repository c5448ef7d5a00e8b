import { setMaxListeners } from 'node:events';
import type { JobResult, PgBoss } from 'pg-boss';
import type { Logger } from '../observability/logger.ts';
import { deadRunQueueName, parseRunRequest, type RunRequest, runQueueName } from './run-queue.ts';

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

  readonly #onMalformed: () => void;

  /** `onMalformed` is told about every queue message dead-lettered for a payload that is not a run. */
  constructor(boss: PgBoss, work: RunWorker, logger: Logger, onMalformed: () => void = () => {}) {
    this.#boss = boss;
    // Every webhook request in flight (up to WEBHOOK_CONCURRENCY) listens to the deadline: no listener-leak warning.
    setMaxListeners(0, this.#deadline.signal);
    this.#work = work;
    this.#logger = logger.child({ component: 'workers' });
    this.#onMalformed = onMalformed;
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

  /**
   * One registration of `work()`. Each queue message is settled on its own:
   * completed with the run's outcome; a thrown error fails it and pg-boss
   * retries it (the queue's retryLimit); a payload that is not a run (sent by
   * hand) is logged with its pg-boss id, counted and dead-lettered at once,
   * since every retry would fail the same way.
   */
  #register(count: number): Promise<string> {
    return this.#boss.work<unknown>(
      runQueueName,
      {
        localConcurrency: count,
        batchSize: 1,
        pollingIntervalSeconds: 1,
        notifyPollingIntervalSeconds: 5,
        perJobResults: true,
      },
      async ([job]): Promise<JobResult[]> => {
        if (!job) return [];
        const parsed = parseRunRequest(job.data);
        if (!parsed.ok) {
          this.#logger.error(
            { pgBossJobId: job.id, queue: runQueueName, deadLetter: deadRunQueueName, reason: parsed.reason },
            `queue message ${job.id} on ${runQueueName} is not a run (${parsed.reason}); moved to ${deadRunQueueName} without retries`,
          );
          this.#onMalformed();
          return [{ id: job.id, status: 'deadletter', output: { error: `not a run: ${parsed.reason}` } }];
        }
        const outcome = await this.#work(parsed.run, {
          stopping: this.#stopping.signal,
          deadline: this.#deadline.signal,
        });
        return [{ id: job.id, status: 'completed', output: { outcome } }];
      },
    );
  }
}
