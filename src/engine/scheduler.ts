import pg from 'pg';
import type { PgBoss } from 'pg-boss';
import type { Pool } from '../db/pool.ts';
import { claimDueJobs, listenJobsChanged, nextJobWakeUp } from '../db/sqlc/jobs_sql.ts';
import { withTransaction } from '../db/transaction.ts';
import type { Logger } from '../observability/logger.ts';
import { enqueueRun, type RunRequest } from './run-queue.ts';

export interface SchedulerSettings {
  instanceId: string;
  /** The safety-net poll, even when nothing asked for a wake-up. */
  fetchIntervalMs: number;
  jobLeaseSeconds: number;
  /** Runs claimed per transaction; a full batch triggers another round at once. */
  maxJobsPerClaim?: number;
}

export interface SchedulerEvents {
  onClaimed?(runs: RunRequest[]): void;
  onError?(error: unknown): void;
}

/**
 * The scheduler (DESIGN.md and the original service call it "the fetcher"):
 * turns due jobs into queued runs. It sleeps until the earliest moment
 * something can be due (next_run_at or an expiring lease, on the database
 * clock), never longer than the poll interval, and wakes at once on a
 * NOTIFY from any pod that started or changed a job.
 */
export class Scheduler {
  readonly #pool: Pool;
  readonly #boss: PgBoss;
  readonly #logger: Logger;
  readonly #events: SchedulerEvents;
  #settings: SchedulerSettings;
  #timer: NodeJS.Timeout | undefined;
  #running: Promise<void> | undefined;
  #again = false;
  #stopped = true;
  #listener: pg.Client | undefined;
  #consecutiveErrors = 0;

  constructor(pool: Pool, boss: PgBoss, settings: SchedulerSettings, logger: Logger, events: SchedulerEvents = {}) {
    this.#pool = pool;
    this.#boss = boss;
    this.#settings = settings;
    this.#logger = logger.child({ component: 'scheduler' });
    this.#events = events;
  }

  async start(connectionString: string): Promise<void> {
    this.#stopped = false;
    await this.#listen(connectionString);
    this.wake();
  }

  /** Applies a new poll interval (live configuration). */
  setFetchInterval(ms: number): void {
    this.#settings = { ...this.#settings, fetchIntervalMs: ms };
  }

  /** Runs a fetch round now (or right after the one in progress). */
  wake(): void {
    if (this.#stopped) return;
    if (this.#running) {
      this.#again = true;
      return;
    }
    clearTimeout(this.#timer);
    this.#running = this.#round().finally(() => {
      this.#running = undefined;
      if (this.#again) {
        this.#again = false;
        this.wake();
      }
    });
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#timer);
    await this.#running;
    await this.#listener?.end().catch(() => {});
    this.#listener = undefined;
  }

  /**
   * One claim-and-enqueue transaction outside the timer loop (the engine's
   * `runOnce`); returns the runs it queued.
   */
  claimOnce(maxJobs = this.#settings.maxJobsPerClaim ?? 100): Promise<RunRequest[]> {
    return this.#claim(maxJobs);
  }

  async #round(): Promise<void> {
    let delayMs = this.#settings.fetchIntervalMs;
    try {
      const max = this.#settings.maxJobsPerClaim ?? 100;
      const runs = await this.#claim(max);
      if (runs.length > 0) this.#events.onClaimed?.(runs);
      if (runs.length === max) {
        this.#again = true;
        return;
      }
      const wakeUp = await nextJobWakeUp(this.#pool);
      if (wakeUp?.waitMs !== null && wakeUp?.waitMs !== undefined) {
        // A few ms late is better than early: an early timer finds nothing due.
        delayMs = Math.min(delayMs, Math.max(0, Math.ceil(wakeUp.waitMs) + 5));
      }
      this.#consecutiveErrors = 0;
    } catch (error) {
      this.#consecutiveErrors += 1;
      delayMs = Math.min(delayMs, 250 * 2 ** Math.min(this.#consecutiveErrors, 5));
      this.#logger.error({ err: error, retryInMs: delayMs }, 'fetch round failed');
      this.#events.onError?.(error);
    } finally {
      if (!this.#stopped) {
        clearTimeout(this.#timer);
        this.#timer = setTimeout(() => this.wake(), delayMs);
      }
    }
  }

  async #claim(maxJobs: number): Promise<RunRequest[]> {
    return withTransaction(this.#pool, async (client) => {
      const claimed = await claimDueJobs(client, {
        maxJobs,
        owner: this.#settings.instanceId,
        leaseSeconds: this.#settings.jobLeaseSeconds,
      });
      const runs: RunRequest[] = [];
      for (const job of claimed) {
        // run_id and run_due_at are set on every in_progress row (jobs_run_fields_iff_in_progress).
        const run: RunRequest = {
          jobId: String(job.id),
          jobName: job.name,
          handler: job.handler,
          batchSize: job.batchSize,
          runId: job.runId!,
          dueAt: job.dueAt!.toISOString(),
        };
        await enqueueRun(this.#boss, client, run);
        runs.push(run);
      }
      return runs;
    });
  }

  async #listen(connectionString: string): Promise<void> {
    const client = new pg.Client({ connectionString, application_name: 'job-manager fetcher listener' });
    client.on('notification', () => this.wake());
    client.on('error', (error) => {
      this.#logger.warn({ err: error }, 'job change listener lost; reconnecting (polling continues meanwhile)');
      this.#listener = undefined;
      client.end().catch(() => {});
      this.#reconnect(connectionString);
    });
    await client.connect();
    await listenJobsChanged(client);
    this.#listener = client;
  }

  #reconnect(connectionString: string): void {
    if (this.#stopped) return;
    setTimeout(() => {
      if (this.#stopped) return;
      this.#listen(connectionString).then(
        () => this.wake(),
        () => this.#reconnect(connectionString),
      );
    }, 1_000).unref();
  }
}
