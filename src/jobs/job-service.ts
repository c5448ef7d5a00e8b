import type { components } from '../api/openapi.ts';
import type { Pool, PoolClient } from '../db/pool.ts';
import type { JobRow } from '../db/rows.ts';
import * as sql from '../db/sqlc/jobs_sql.ts';
import { withTransaction } from '../db/transaction.ts';
import { ConflictError, NotFoundError, ValidationError } from '../errors.ts';
import type { JobSchedule } from '../observability/metrics.ts';

/** A job as the API shows it: openapi.yaml's `Job` schema. */
export type JobView = components['schemas']['Job'];

/** The body of `POST /jobs`: openapi.yaml's `NewJob` schema. */
export type NewJob = components['schemas']['NewJob'];

/** The body of `PATCH /jobs/{name}`: openapi.yaml's `JobUpdate` schema. */
export type JobSettingsChange = components['schemas']['JobUpdate'];

/** Names that would collide with the switches `PUT /jobs/start` and `PUT /jobs/stop`. */
export const reservedJobNames = ['start', 'stop'] as const;

/**
 * The operator's side of jobs. Every change is announced with NOTIFY in the
 * same transaction, so all pods' fetchers see it the moment it commits.
 */
export class JobService {
  readonly #pool: Pool;
  readonly #isHandler: (name: string) => boolean;
  readonly #handlerNames: () => string[];

  constructor(pool: Pool, handlers: { has(name: string): boolean; names(): string[] }) {
    this.#pool = pool;
    this.#isHandler = (name) => handlers.has(name);
    this.#handlerNames = () => handlers.names();
  }

  /** Jobs per status (`active`, `inactive`, `in_progress`), for the `job_manager_jobs` gauge. */
  async countByStatus(): Promise<Record<string, number>> {
    return Object.fromEntries((await sql.countJobsByStatus(this.#pool)).map((row) => [row.status, Number(row.total)]));
  }

  async list(): Promise<JobView[]> {
    return (await sql.listJobs(this.#pool)).map(toJobView);
  }

  /** Every job's schedule, for the alerting gauges (last run, interval, active). */
  async schedules(): Promise<JobSchedule[]> {
    return (await sql.listJobs(this.#pool)).map((row) => ({
      name: row.name,
      active: row.status !== 'inactive',
      intervalSeconds: row.intervalSeconds,
      lastRunAt: row.lastTriggeredAt,
    }));
  }

  async get(name: string): Promise<JobView> {
    const row = couldNameJob(name) ? await sql.getJobByName(this.#pool, { name }) : null;
    if (!row) throw new NotFoundError('job_not_found', `job "${name}" does not exist`);
    return toJobView(row);
  }

  /**
   * Creates a job (inactive unless `active`).
   * @throws ValidationError `reserved_job_name` for `start` or `stop` (their paths are the switches), `unknown_handler`
   * @throws ConflictError `job_exists`
   */
  async create(job: NewJob): Promise<JobView> {
    if ((reservedJobNames as readonly string[]).includes(job.name)) {
      throw new ValidationError(
        'reserved_job_name',
        `"${job.name}" cannot name a job: /jobs/${job.name} is the ${job.name} switch (reserved: ${reservedJobNames.join(', ')})`,
      );
    }
    if (!this.#isHandler(job.handler)) {
      throw new ValidationError(
        'unknown_handler',
        `handler "${job.handler}" is not registered (known: ${this.#handlerNames().join(', ')})`,
      );
    }
    return withTransaction(this.#pool, async (client) => {
      const row = await sql.createJob(client, {
        name: job.name,
        handler: job.handler,
        intervalSeconds: job.intervalSeconds,
        batchSize: job.batchSize,
        status: job.active ? 'active' : 'inactive',
      });
      if (!row) throw new ConflictError('job_exists', `a job named "${job.name}" already exists`);
      await sql.notifyJobsChanged(client, { reason: `created ${job.name}` });
      return toJobView(row);
    });
  }

  async update(name: string, change: JobSettingsChange): Promise<JobView> {
    if (!couldNameJob(name)) throw new NotFoundError('job_not_found', `job "${name}" does not exist`);
    return withTransaction(this.#pool, async (client) => {
      const row = await sql.updateJobSettings(client, {
        name,
        intervalSeconds: change.intervalSeconds ?? null,
        batchSize: change.batchSize ?? null,
      });
      if (!row) throw new NotFoundError('job_not_found', `job "${name}" does not exist`);
      await sql.notifyJobsChanged(client, { reason: `updated ${name}` });
      return toJobView(row);
    });
  }

  /** Switches one job (or, with no name, every job) on. Idempotent. */
  start(name?: string): Promise<JobView[]> {
    return this.#switch(
      name,
      async (client) => (await sql.startJobs(client, { name: name ?? null })).length,
      'started',
    );
  }

  /** Switches one job (or every job) off; a run in flight cannot undo it. Idempotent. */
  stop(name?: string): Promise<JobView[]> {
    return this.#switch(name, async (client) => (await sql.stopJobs(client, { name: name ?? null })).length, 'stopped');
  }

  async #switch(
    name: string | undefined,
    change: (client: PoolClient) => Promise<number>,
    verb: string,
  ): Promise<JobView[]> {
    if (name !== undefined && !couldNameJob(name)) {
      throw new NotFoundError('job_not_found', `job "${name}" does not exist`);
    }
    return withTransaction(this.#pool, async (client) => {
      if (name !== undefined && !(await sql.getJobByName(client, { name }))) {
        throw new NotFoundError('job_not_found', `job "${name}" does not exist`);
      }
      if ((await change(client)) > 0) await sql.notifyJobsChanged(client, { reason: `${verb} ${name ?? 'all'}` });
      const rows = name === undefined ? await sql.listJobs(client) : [await sql.getJobByName(client, { name })];
      return rows.filter((row) => row !== null).map(toJobView);
    });
  }
}

/**
 * Whether some job could have this name (the `jobs_name_format` CHECK of the first migration, and
 * openapi.yaml's `JobName`). Lookups take any text; one that fails this is unknown without asking
 * the database (which would refuse a NUL byte, for one).
 */
function couldNameJob(name: string): boolean {
  return /^[a-z0-9][a-z0-9._-]{0,63}$/.test(name);
}

export function toJobView(row: JobRow): JobView {
  return {
    name: row.name,
    handler: row.handler,
    // The jobs_status_valid CHECK constraint admits only the spec's JobStatus values.
    status: row.status as JobView['status'],
    intervalSeconds: row.intervalSeconds,
    batchSize: row.batchSize,
    lastTriggeredAt: row.lastTriggeredAt ? row.lastTriggeredAt.toISOString() : null,
    nextRunAt: row.nextRunAt.toISOString(),
    createdAt: row.createdAt.toISOString(),
    updatedAt: row.updatedAt.toISOString(),
    lastError: row.lastError,
    runCount: Number(row.runCount),
    failureCount: Number(row.failureCount),
  };
}
