// Two pods starting at once on a new database both install pg-boss's schema.
// PostgreSQL's `CREATE SCHEMA IF NOT EXISTS` is not atomic against another
// session creating the same schema: the second gets a unique violation on
// pg_namespace, which pg-boss passes on. The start must survive it (seen in CI:
// a pod behind PgBouncer exited at start-up with that error). Made
// deterministic here: another session creates the schema and commits while
// pg-boss's own creation waits on it.
import { expect } from 'chai';
import pg from 'pg';
import { startRunQueue } from '../../src/engine/run-queue.ts';
import { createLogger } from '../../src/observability/logger.ts';
import { useTestDatabase } from '../support/postgres.ts';
import { eventually } from '../support/service.ts';

describe("pg-boss's schema installed by two pods at once", function () {
  this.timeout(60_000);
  const db = useTestDatabase();

  it('starts when another session creates the schema under it (unique violation on pg_namespace), once', async () => {
    const lines: Array<Record<string, unknown>> = [];
    const logger = createLogger({
      level: 'info',
      instanceId: 'install-race',
      format: 'json',
      destination: { write: (line: string) => void lines.push(JSON.parse(line)) },
    });
    await db().pool.query('DROP SCHEMA IF EXISTS pgboss CASCADE');
    const other = new pg.Client({ connectionString: db().url });
    await other.connect();
    try {
      await other.query('BEGIN');
      await other.query('CREATE SCHEMA pgboss');
      const starting = startRunQueue(
        { connectionString: db().url, instanceId: 'install-race', runTimeoutSeconds: 60 },
        logger,
      );
      // pg-boss's CREATE SCHEMA IF NOT EXISTS waits on the other session's uncommitted row.
      await eventually(
        async () =>
          (
            await db().pool.query(
              `SELECT count(*)::int AS n FROM pg_stat_activity
                WHERE application_name = 'job-manager install-race pg-boss' AND wait_event_type = 'Lock'`,
            )
          ).rows[0].n as number,
        (waiting) => waiting > 0,
        { timeoutMs: 30_000 },
      );
      await other.query('COMMIT');
      const boss = await starting;
      try {
        const retried = lines.filter((line) => String(line.msg).startsWith("another pod installed pg-boss's schema"));
        expect(retried).to.have.length(1);
        expect(String(retried[0]!.reason)).to.include('pg_namespace_nspname_index');
        const { rows } = await db().pool.query("SELECT to_regclass('pgboss.version') IS NOT NULL AS installed");
        expect(rows[0].installed).to.equal(true);
      } finally {
        await boss.stop({ graceful: false, close: true, timeout: 1_000 });
      }
    } finally {
      await other.end();
    }
  });
});
