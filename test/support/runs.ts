import type { Pool } from '../../src/db/pool.ts';
import { runQueueName } from '../../src/engine/run-queue.ts';

/**
 * How many runs of `jobName` are still queued or executing: its messages on
 * pg-boss's run queue that are not settled yet. A queue message is settled
 * only after the run's end was recorded (or the run was skipped), so 0 after
 * a stop means no run of the job can still send, record or count anything.
 */
export async function runsNotSettled(pool: Pool, jobName: string): Promise<number> {
  const { rows } = await pool.query(
    `SELECT count(*)::int AS n FROM pgboss.job
     WHERE name = $1 AND data->>'jobName' = $2 AND state IN ('created', 'retry', 'active')`,
    [runQueueName, jobName],
  );
  return rows[0].n;
}
