import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'chai';
import pg from 'pg';
import { concurrentIndexName, migrate, readMigrations, upSection } from '../../src/db/migrator.ts';
import { createPool } from '../../src/db/pool.ts';
import { createLogger, silentLogger } from '../../src/observability/logger.ts';
import { useTestDatabase } from '../support/postgres.ts';

/** A folder of migration files: `{ '001_a.sql': '-- migrate:up\n…' }`. */
async function migrationsDir(files: Record<string, string>): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'migrations-'));
  for (const [name, text] of Object.entries(files)) await writeFile(join(dir, name), text);
  return dir;
}

/** A logger whose lines land in `lines` (pino's JSON objects). */
function recordingLogger() {
  const lines: Array<{ msg: string; level: number; [key: string]: unknown }> = [];
  const logger = createLogger({
    level: 'info',
    instanceId: 'test',
    format: 'json',
    destination: { write: (line: string) => void lines.push(JSON.parse(line)) },
  });
  return { logger, lines };
}

/** Resolves once `condition` holds, checking every 50 ms. */
async function until(condition: () => Promise<boolean> | boolean, what: string, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

describe('migrator', () => {
  const db = useTestDatabase({ migrate: false });

  async function reset(...tables: string[]) {
    await db().pool.query(
      ['schema_migrations', 'schema_migrations_lease', ...tables].map((t) => `DROP TABLE IF EXISTS ${t};`).join(''),
    );
  }

  async function indexValidity(index: string): Promise<boolean | null> {
    const { rows } = await db().pool.query('SELECT indisvalid FROM pg_index WHERE indexrelid = to_regclass($1)', [
      index,
    ]);
    return rows[0]?.indisvalid ?? null;
  }

  async function recorded(): Promise<string[]> {
    const { rows } = await db().pool.query('SELECT name FROM schema_migrations ORDER BY version');
    return rows.map((row) => row.name);
  }

  it('applies every migration once, and seeds the message-sender job', async () => {
    const first = await migrate(db().pool, silentLogger());
    expect(first.applied).to.have.length((await readMigrations()).length);
    const second = await migrate(db().pool, silentLogger());
    expect(second).to.deep.equal({ applied: [], changed: [] });
    const { rows } = await db().pool.query('SELECT name, handler, interval_seconds, batch_size, status FROM jobs');
    expect(rows).to.deep.equal([
      { name: 'message-sender', handler: 'send-messages', interval_seconds: 120, batch_size: 2, status: 'active' },
    ]);
  });

  it('is safe when several instances migrate at the same moment, a transaction:false file among the others', async () => {
    const dir = await migrationsDir({
      '001_a.sql':
        '-- migrate:up\nCREATE TABLE race_a (id int);\nINSERT INTO race_a SELECT generate_series(1, 1000);\n',
      '002_b.sql':
        '-- migrate:up transaction:false\nCREATE INDEX CONCURRENTLY IF NOT EXISTS race_a_idx ON race_a (id);\n',
      // Fails unless 002 ran before it.
      '003_c.sql':
        '-- migrate:up\nALTER INDEX race_a_idx RENAME TO race_a_id_idx;\n-- migrate:down\nDROP TABLE nope;\n',
    });
    await reset('race_a');
    const reports = await Promise.all([1, 2, 3, 4].map(() => migrate(db().pool, silentLogger(), { dir, pollMs: 50 })));
    expect(reports.flatMap((report) => report.applied).sort()).to.deep.equal(['001_a.sql', '002_b.sql', '003_c.sql']);
    expect(await indexValidity('race_a_id_idx')).to.equal(true);
    expect(await recorded()).to.deep.equal(['001_a.sql', '002_b.sql', '003_c.sql']);
  });

  it('reports a migration changed after it was applied and does not re-run it', async () => {
    await reset('counted');
    const dir = await migrationsDir({ '001_counted.sql': '-- migrate:up\nCREATE TABLE counted (id int);\n' });
    await migrate(db().pool, silentLogger(), { dir });
    await writeFile(join(dir, '001_counted.sql'), '-- migrate:up\nCREATE TABLE counted (id int, extra int);\n');
    const report = await migrate(db().pool, silentLogger(), { dir });
    expect(report).to.deep.equal({ applied: [], changed: ['001_counted.sql'] });
    const { rows } = await db().pool.query(
      "SELECT count(*)::int AS n FROM information_schema.columns WHERE table_name = 'counted'",
    );
    expect(rows[0].n).to.equal(1);
  });

  it('rolls back a failing file alone: the files before it stay applied, the next run starts at it', async () => {
    await reset('atomic_ok', 'atomic_bad');
    const dir = await migrationsDir({
      '001_ok.sql': '-- migrate:up\nCREATE TABLE atomic_ok (id int);\n',
      '002_bad.sql':
        '-- migrate:up\nCREATE TABLE atomic_bad (id int);\nALTER TABLE atomic_bad ADD COLUMN x nosuchtype;\n',
    });
    let failure: Error | undefined;
    await migrate(db().pool, silentLogger(), { dir }).catch((error: Error) => (failure = error));
    expect(failure?.message).to.match(/migration 002_bad\.sql failed: type "nosuchtype" does not exist/);
    const { rows } = await db().pool.query("SELECT to_regclass('atomic_ok') AS ok, to_regclass('atomic_bad') AS bad");
    expect(rows[0]).to.deep.equal({ ok: 'atomic_ok', bad: null });
    expect(await recorded()).to.deep.equal(['001_ok.sql']);

    await writeFile(join(dir, '002_bad.sql'), '-- migrate:up\nCREATE TABLE atomic_bad (id int);\n');
    expect(await migrate(db().pool, silentLogger(), { dir })).to.deep.equal({ applied: ['002_bad.sql'], changed: [] });
  });

  it('refuses a file without an up section', () => {
    expect(() => upSection('CREATE TABLE x ();', '003_x.sql')).to.throw(/003_x\.sql has no "-- migrate:up" section/);
  });

  it('reads dbmate\'s "transaction:false" on the up line, and the index a CONCURRENTLY file builds', async () => {
    const dir = await migrationsDir({
      '001_plain.sql': '-- migrate:up\nSELECT 1;\n',
      '002_outside.sql': '-- migrate:up transaction:false\nCREATE INDEX CONCURRENTLY x_idx ON x (id);\n',
    });
    const [plain, outside] = await readMigrations(dir);
    expect([plain?.transactional, plain?.sql]).to.deep.equal([true, 'SELECT 1;']);
    expect([outside?.transactional, outside?.sql]).to.deep.equal([false, 'CREATE INDEX CONCURRENTLY x_idx ON x (id);']);
    expect(
      concurrentIndexName('-- why\nCREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS public."Odd" ON x (id)'),
    ).to.equal('public."Odd"');
    expect(concurrentIndexName('CREATE INDEX x_idx ON x (id)')).to.equal(undefined);
  });

  it('rebuilds the INVALID index an interrupted CONCURRENTLY build left, on the next run', async () => {
    await reset('dup');
    await db().pool.query('CREATE TABLE dup (id int); INSERT INTO dup VALUES (1), (1), (2)');
    const dir = await migrationsDir({
      '001_unique.sql':
        '-- migrate:up transaction:false\nCREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS dup_id_key ON dup (id);\n',
    });
    let failure: Error | undefined;
    await migrate(db().pool, silentLogger(), { dir }).catch((error: Error) => (failure = error));
    expect(failure?.message).to.match(/migration 001_unique\.sql failed: could not create unique index "dup_id_key"/);
    expect(await indexValidity('dup_id_key')).to.equal(false);
    const lease = await db().pool.query('SELECT count(*)::int AS n FROM schema_migrations_lease');
    expect(lease.rows[0].n).to.equal(0); // a failed build does not make the next run wait for its lease

    await db().pool.query('DELETE FROM dup WHERE ctid = (SELECT max(ctid) FROM dup WHERE id = 1)');
    const { logger, lines } = recordingLogger();
    // IF NOT EXISTS alone would keep the INVALID index and record the migration as done.
    expect(await migrate(db().pool, logger, { dir })).to.deep.equal({ applied: ['001_unique.sql'], changed: [] });
    expect(await indexValidity('dup_id_key')).to.equal(true);
    expect(lines.map((line) => line.msg)).to.include(
      'dropping the INVALID index an interrupted CONCURRENTLY build left, to build it again',
    );
  });

  it('a CONCURRENTLY build waits for an old transaction while other pods poll, and one cut off is healed', async () => {
    await reset('waited');
    await db().pool.query('CREATE TABLE waited (id int); INSERT INTO waited SELECT generate_series(1, 1000)');
    const dir = await migrationsDir({
      '001_idx.sql':
        '-- migrate:up transaction:false\nCREATE INDEX CONCURRENTLY IF NOT EXISTS waited_idx ON waited (id);\n',
    });
    // An old snapshot (a report, a psql left open): the build waits for it, without a lock_timeout to cancel it.
    const old = new pg.Client({ connectionString: db().url });
    await old.connect();
    try {
      const oldPid: number = (await old.query('SELECT pg_backend_pid() AS pid')).rows[0].pid;
      await old.query('BEGIN ISOLATION LEVEL REPEATABLE READ');
      await old.query('SELECT count(*) FROM pg_class');
      const firstLog = recordingLogger();
      const first = migrate(db().pool, firstLog.logger, { dir, leaseMs: 900 }).then(
        () => undefined,
        (error: Error) => error,
      );
      const buildPid = async () => {
        const { rows } = await db().pool.query(
          `SELECT pid FROM pg_stat_activity
           WHERE query LIKE 'CREATE INDEX CONCURRENTLY%' AND wait_event = 'virtualxid'`,
        );
        return rows[0]?.pid as number | undefined;
      };
      await until(async () => (await buildPid()) !== undefined, 'the build waiting for the old snapshot');
      // The pod says what its build waits for (renewing its lease every 300 ms here).
      const waitLine = () => firstLog.lines.find((line) => line.msg.startsWith('the CONCURRENTLY build is waiting'));
      await until(() => waitLine() !== undefined, 'the build reporting its wait');
      expect(waitLine()).to.deep.include({ phase: 'waiting for old snapshots', blockingPids: [oldPid] });
      // Another pod meanwhile polls in short transactions (none the build would wait for), and is not done.
      const { logger, lines } = recordingLogger();
      const second = migrate(db().pool, logger, { dir, pollMs: 50 });
      await until(
        () => lines.some((line) => line.msg.startsWith('another instance is applying')),
        'second pod waiting',
      );
      // The first pod's session dies mid-build: its INVALID index stays behind.
      await db().pool.query('SELECT pg_terminate_backend($1)', [await buildPid()]);
      expect((await first)?.message).to.match(/migration 001_idx\.sql failed: terminating connection/);
      await old.query('COMMIT');
      expect(await second).to.deep.equal({ applied: ['001_idx.sql'], changed: [] });
      expect(await indexValidity('waited_idx')).to.equal(true);
    } finally {
      await old.end();
    }
  });

  it('takes over a transaction:false file whose pod stopped renewing its lease', async () => {
    await reset('orphan');
    await db().pool.query('CREATE TABLE orphan (id int)');
    const dir = await migrationsDir({
      '001_idx.sql':
        '-- migrate:up transaction:false\nCREATE INDEX CONCURRENTLY IF NOT EXISTS orphan_idx ON orphan (id);\n',
    });
    await migrate(db().pool, silentLogger(), { dir: await migrationsDir({}) }); // creates the bookkeeping tables
    await db().pool.query(
      "INSERT INTO schema_migrations_lease VALUES ('001', 'a pod that died', now() + interval '1 second')",
    );
    const { logger, lines } = recordingLogger();
    expect(await migrate(db().pool, logger, { dir, pollMs: 50 })).to.deep.equal({
      applied: ['001_idx.sql'],
      changed: [],
    });
    const takeover = lines.find((line) => line.msg === 'taking over a migration whose pod stopped renewing its lease');
    expect(takeover?.previousHolder).to.equal('a pod that died');
  });

  describe('lock_timeout', () => {
    /**
     * Runs `body` while another session holds ACCESS SHARE on a new, empty
     * table `busy`; `unlock` ends that session's transaction early, and the
     * lock ends after `body` in any case.
     */
    async function whileBusyLocked(body: (unlock: () => Promise<void>) => Promise<void>): Promise<void> {
      await reset('busy');
      await db().pool.query('CREATE TABLE busy (id int)');
      const holder = await db().pool.connect();
      let locked = true;
      const unlock = async () => {
        if (locked) await holder.query('COMMIT');
        locked = false;
      };
      try {
        await holder.query('BEGIN');
        await holder.query('LOCK TABLE busy IN ACCESS SHARE MODE');
        await body(unlock);
      } finally {
        await unlock();
        holder.release();
      }
    }

    const lockedDir = () =>
      migrationsDir({
        '001_col.sql': "-- migrate:up\nSET lock_timeout = '100ms';\nALTER TABLE busy ADD COLUMN note text;\n",
      });

    it('retries a file that timed out waiting for its lock, with backoff, and applies it once the lock is free', async () => {
      const dir = await lockedDir();
      await whileBusyLocked(async (unlock) => {
        const { logger, lines } = recordingLogger();
        const migrating = migrate(db().pool, logger, { dir });
        await until(() => lines.some((line) => line.msg.includes('(lock_timeout)')), 'a retried lock_timeout');
        await unlock();
        expect(await migrating).to.deep.equal({ applied: ['001_col.sql'], changed: [] });
        const retry = lines.find((line) => line.msg.includes('(lock_timeout)'));
        expect(retry).to.include({ attempt: 1, retryInMs: 1_000 });
        expect(retry?.reason).to.equal('migration 001_col.sql failed: canceling statement due to lock timeout');
      });
    });

    it('gives up after lockRetryMs with the file named, leaving nothing of it applied', async () => {
      const dir = await lockedDir();
      await whileBusyLocked(async () => {
        let failure: Error | undefined;
        await migrate(db().pool, silentLogger(), { dir, lockRetryMs: 2_500 }).catch(
          (error: Error) => (failure = error),
        );
        expect(failure?.message).to.equal('migration 001_col.sql failed: canceling statement due to lock timeout');
        expect(await recorded()).to.deep.equal([]);
      });
    });

    it("does not leave a file's own lock_timeout on the pooled connection", async () => {
      await reset('busy');
      await db().pool.query('CREATE TABLE busy (id int)');
      const pool = createPool({ connectionString: db().url, max: 1 });
      try {
        await migrate(pool, silentLogger(), { dir: await lockedDir() });
        const { rows } = await pool.query('SHOW lock_timeout');
        expect(rows[0].lock_timeout).to.equal('0');
      } finally {
        await pool.end();
      }
    });
  });
});
