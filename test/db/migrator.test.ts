import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'chai';
import { migrate, readMigrations, upSection } from '../../src/db/migrator.ts';
import { silentLogger } from '../../src/observability/logger.ts';
import { useTestDatabase } from '../support/postgres.ts';

describe('migrator', () => {
  const db = useTestDatabase({ migrate: false });

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

  it('is safe when several instances migrate at the same moment', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'migrations-'));
    await writeFile(join(dir, '001_a.sql'), '-- migrate:up\nCREATE TABLE race_a (id int);\n');
    await writeFile(
      join(dir, '002_b.sql'),
      '-- migrate:up\nCREATE TABLE race_b (id int);\n-- migrate:down\nDROP TABLE nope;\n',
    );
    await db().pool.query('DROP TABLE IF EXISTS schema_migrations');
    const reports = await Promise.all([1, 2, 3, 4].map(() => migrate(db().pool, silentLogger(), dir)));
    const appliedCounts = reports.map((report) => report.applied.length).sort();
    expect(appliedCounts).to.deep.equal([0, 0, 0, 2]);
  });

  it('reports a migration changed after it was applied and does not re-run it', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'migrations-'));
    await db().pool.query('DROP TABLE IF EXISTS schema_migrations; DROP TABLE IF EXISTS counted');
    await writeFile(join(dir, '001_counted.sql'), '-- migrate:up\nCREATE TABLE counted (id int);\n');
    await migrate(db().pool, silentLogger(), dir);
    await writeFile(join(dir, '001_counted.sql'), '-- migrate:up\nCREATE TABLE counted (id int, extra int);\n');
    const report = await migrate(db().pool, silentLogger(), dir);
    expect(report).to.deep.equal({ applied: [], changed: ['001_counted.sql'] });
    const { rows } = await db().pool.query(
      "SELECT count(*)::int AS n FROM information_schema.columns WHERE table_name = 'counted'",
    );
    expect(rows[0].n).to.equal(1);
  });

  it('rolls back every file of a run when one fails', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'migrations-'));
    await db().pool.query('DROP TABLE IF EXISTS schema_migrations');
    await writeFile(join(dir, '001_ok.sql'), '-- migrate:up\nCREATE TABLE atomic_ok (id int);\n');
    await writeFile(join(dir, '002_bad.sql'), '-- migrate:up\nCREATE TABLE atomic_bad (id nosuchtype);\n');
    let failure: Error | undefined;
    await migrate(db().pool, silentLogger(), dir).catch((error: Error) => (failure = error));
    expect(failure?.message).to.match(/migration 002_bad\.sql failed: type "nosuchtype" does not exist/);
    const { rows } = await db().pool.query("SELECT to_regclass('atomic_ok') AS t");
    expect(rows[0].t).to.equal(null);
  });

  it('refuses a file without an up section', () => {
    expect(() => upSection('CREATE TABLE x ();', '003_x.sql')).to.throw(/003_x\.sql has no "-- migrate:up" section/);
  });
});
