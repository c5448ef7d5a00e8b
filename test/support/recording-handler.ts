import pg from 'pg';
import type { JobHandler } from '../../src/engine/handler.ts';

/**
 * A handler registered only in tests: records every run it executes in
 * test_runs (job, slot, run, pod). A job named like `slow-sleep3000` takes
 * that many milliseconds to finish.
 */
export const createTestRunsTable = `CREATE TABLE IF NOT EXISTS test_runs (
  job_name text NOT NULL,
  due_at timestamptz NOT NULL,
  run_id uuid NOT NULL,
  instance text NOT NULL,
  started_at timestamptz NOT NULL DEFAULT clock_timestamp(),
  finished_at timestamptz
)`;

export function recordingHandler(databaseUrl: string, instance: string): JobHandler {
  const pool = new pg.Pool({ connectionString: databaseUrl, max: 4 });
  pool.on('error', () => {});
  return {
    async run(context) {
      const { rows } = await pool.query(
        'INSERT INTO test_runs (job_name, due_at, run_id, instance) VALUES ($1, $2, $3, $4) RETURNING ctid',
        [context.jobName, context.dueAt, context.runId, instance],
      );
      const sleepMs = Number(/sleep(\d+)/.exec(context.jobName)?.[1] ?? 0);
      if (sleepMs > 0) await new Promise((resolve) => setTimeout(resolve, sleepMs));
      await pool.query('UPDATE test_runs SET finished_at = clock_timestamp() WHERE ctid = $1', [rows[0].ctid]);
      return { recorded: true };
    },
  };
}
