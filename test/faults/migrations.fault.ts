import { existsSync } from 'node:fs';
import { chmod, chown, cp, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'chai';
import pg from 'pg';
import { findFreePort } from '../../src/db/embedded.ts';
import { migrate } from '../../src/db/migrator.ts';
import { createPool } from '../../src/db/pool.ts';
import { silentLogger } from '../../src/observability/logger.ts';
import { lintMigrations } from '../../tools/migration-lint/lint.ts';
import { launch, startPod, type TestProcess } from '../support/processes.ts';
import { postgresUser } from './support/cluster.ts';
import { faultSuite, http, type Scenario, type ServicePod, until } from './support/kit.ts';

/**
 * A deploy under load: a `messages` table of 500,000 rows, a pod of the
 * current release taking intake from four clients without pause and
 * delivering, then a pod of the next release starts and applies its new
 * migrations (a column with a default and a NOT VALID constraint, its
 * VALIDATE, a CREATE INDEX CONCURRENTLY). Intake must answer 2xx throughout,
 * no intake request may take longer than `slowestAllowedMs`, and deliveries
 * must go on while the migrations run.
 *
 * The bound: 2 s (or twice the slowest call before the deploy, when the
 * machine is so loaded that it was already over 1 s). The migrations' brief ACCESS EXCLUSIVE lock (ADD COLUMN with
 * a constant default, ADD CONSTRAINT NOT VALID) waits only for the
 * transactions in flight (milliseconds); the build and the validation take
 * locks that do not block reads or writes. The same load against a plain
 * CREATE INDEX (no CONCURRENTLY) on this table stalled intake for the whole
 * build (docs/development.md "Writing a migration").
 */
const rows = 500_000;
const intakeClients = 4;
const slowestAllowedMs = 2_000;

/** The next release's new migrations (test-only, in the timestamp range of the migrations work). */
const nextReleaseMigrations: Record<string, string> = {
  '20261207019001_load_note.sql': `-- migrate:up
SET lock_timeout = '5s';
ALTER TABLE messages ADD COLUMN load_note text DEFAULT 'none';
ALTER TABLE messages ADD CONSTRAINT messages_load_note_length CHECK (char_length(load_note) <= 100) NOT VALID;
`,
  '20261207019002_load_note_valid.sql': `-- migrate:up
SET lock_timeout = '5s';
ALTER TABLE messages VALIDATE CONSTRAINT messages_load_note_length;
`,
  '20261207019003_load_recipient_idx.sql': `-- migrate:up transaction:false
CREATE INDEX CONCURRENTLY IF NOT EXISTS messages_load_recipient_idx ON messages (recipient, updated_at);
`,
};

/**
 * A copy of the release (src/, db/, openapi.yaml, package.json; node_modules
 * linked) with the new migration files added: what a deploy ships.
 */
async function nextRelease(): Promise<string> {
  const repo = new URL('../../', import.meta.url).pathname;
  const dir = await mkdtemp(join(tmpdir(), 'jm-next-release-'));
  for (const part of ['src', 'db', 'openapi.yaml', 'package.json']) {
    await cp(join(repo, part), join(dir, part), { recursive: true });
  }
  await symlink(join(repo, 'node_modules'), join(dir, 'node_modules'));
  for (const [name, text] of Object.entries(nextReleaseMigrations)) {
    await writeFile(join(dir, 'db/migrations', name), text);
  }
  return dir;
}

interface IntakeCall {
  startedAt: number;
  ms: number;
  status: number;
}

/** `clients` loops posting one message each, back to back, until `stop()`; every call recorded. */
function intakeLoad(s: Scenario, pod: ServicePod, clients: number) {
  const calls: IntakeCall[] = [];
  let running = true;
  const loop = async (client: number) => {
    for (let n = 0; running; n += 1) {
      const startedAt = Date.now();
      const answer = await http(pod.url, 'POST', '/messages', { to: '+905551111111', content: `load ${client}/${n}` });
      calls.push({ startedAt, ms: Date.now() - startedAt, status: answer.status });
      if (answer.body?.id) s.ids.push(answer.body.id);
    }
  };
  const loops = Array.from({ length: clients }, (_, client) => loop(client));
  return {
    calls,
    async stop() {
      running = false;
      await Promise.all(loops);
    },
  };
}

const pgbouncerBinary = '/usr/sbin/pgbouncer';

/**
 * Debian's PgBouncer in front of `serverPort`, `pool_mode = transaction`,
 * every other setting at its default; trust authentication. As root it runs
 * as `postgres` (it refuses root). Resolves once it answers.
 */
async function startPgBouncer(serverPort: number): Promise<{ url(db: string): string; stop(): Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), 'jm-pgbouncer-'));
  const port = await findFreePort();
  await writeFile(join(dir, 'users.txt'), '"postgres" ""\n');
  const ini = ['[databases]', `* = host=127.0.0.1 port=${serverPort}`, '[pgbouncer]', 'listen_addr = 127.0.0.1'];
  ini.push(`listen_port = ${port}`, 'unix_socket_dir =', 'auth_type = trust', `auth_file = ${join(dir, 'users.txt')}`);
  await writeFile(join(dir, 'pgbouncer.ini'), [...ini, 'pool_mode = transaction', ''].join('\n'));
  const asRoot = process.getuid?.() === 0;
  if (asRoot) {
    const user = postgresUser();
    await chmod(dir, 0o755);
    for (const file of ['', 'users.txt', 'pgbouncer.ini']) await chown(join(dir, file), user.uid, user.gid);
  }
  const bouncer: TestProcess = launch(pgbouncerBinary, {
    name: 'pgbouncer',
    args: [...(asRoot ? ['-u', 'postgres'] : []), join(dir, 'pgbouncer.ini')],
  });
  const url = (db: string) => `postgres://postgres@127.0.0.1:${port}/${db}`;
  const stop = async () => {
    await bouncer.stop('SIGINT', 5_000);
    await rm(dir, { recursive: true, force: true });
  };
  await until('pgbouncer answering', async () => {
    if (!bouncer.alive) throw new Error(`pgbouncer exited:\n${bouncer.output()}`);
    const client = new pg.Client({ connectionString: url('postgres'), connectionTimeoutMillis: 2_000 });
    client.on('error', () => {});
    return client.connect().then(
      () => client.end().then(() => true),
      () => false,
    );
  }).catch(async (error) => {
    await stop();
    throw error;
  });
  return { url, stop };
}

describe('fault injection: migrations under load', function () {
  this.timeout(300_000);
  const { rig, begin } = faultSuite();
  let release = '';

  before(async () => {
    release = await nextRelease();
  });

  after(async () => {
    if (release) await rm(release, { recursive: true, force: true });
  });

  it("the next release's migrations, applied by its first pod on 500,000 messages, never stop intake or dispatch", async () => {
    const s = await begin('migrations under load');
    const current = await s.pod('current', s.env());
    await s.quietDefaultJob(current);
    await s.query(`
      INSERT INTO messages (recipient, content, status, attempts, next_attempt_at, created_at, updated_at, sent_at,
                            external_message_id)
      SELECT '+9055' || lpad((g % 10000000)::text, 8, '0'), 'filler #' || g, 'sent', 1, t, t, t, t, 'receipt-' || g
      FROM generate_series(1, ${rows}) AS g,
           LATERAL (SELECT now() - interval '30 days' + g * interval '5 seconds') AS x(t)`);
    await s.query('ANALYZE messages');
    expect(
      (await lintMigrations(join(release, 'db/migrations'))).findings,
      'the new files pass the lint',
    ).to.deep.equal([]);
    await s.senders(current, 2, 100, 1);

    const load = intakeLoad(s, current, intakeClients);
    await until('intake and delivery flowing', () => rig.receiver.accepted >= 50, 60_000);
    const migrationStart = Date.now();
    const next = await startPod(
      'migrations-next',
      { HOME: process.env.HOME ?? '/root', ...s.env() },
      {
        entry: join(release, 'src/main.ts'),
        group: true,
        timeoutMs: 240_000,
      },
    );
    s.pods.push(next);
    const migrationEnd = Date.now();
    // The load goes on a little after the new pod is up.
    const countAtEnd = load.calls.length;
    await until('more intake after the migration', () => load.calls.length >= countAtEnd + 50, 30_000);
    await load.stop();

    const applied = await s.query<{ name: string }>(
      "SELECT name FROM schema_migrations WHERE version LIKE '2026120701%' ORDER BY version",
    );
    expect(applied.map((row) => row.name)).to.deep.equal(Object.keys(nextReleaseMigrations));
    const [shape] = await s.query<{ valid_index: boolean; validated: boolean }>(`
      SELECT (SELECT indisvalid FROM pg_index WHERE indexrelid = 'messages_load_recipient_idx'::regclass) AS valid_index,
             (SELECT convalidated FROM pg_constraint WHERE conname = 'messages_load_note_length') AS validated`);
    expect(shape).to.deep.equal({ valid_index: true, validated: true });

    const during = load.calls.filter(
      (call) => call.startedAt + call.ms >= migrationStart && call.startedAt <= migrationEnd,
    );
    const before = load.calls.filter((call) => call.startedAt + call.ms < migrationStart);
    const slowest = (calls: IntakeCall[]) => Math.max(0, ...calls.map((call) => call.ms));
    const deliveredDuring = rig.receiver.deliveries.filter(
      (delivery) => delivery.status === 202 && delivery.at >= migrationStart && delivery.at <= migrationEnd,
    ).length;
    s.note =
      `${rows.toLocaleString('en')} rows; migrating took ${((migrationEnd - migrationStart) / 1000).toFixed(1)} s ` +
      `(pod start included); ${during.length} intake calls during it, slowest ${slowest(during)} ms ` +
      `(before it: ${before.length} calls, slowest ${slowest(before)} ms); ${deliveredDuring} delivered during it`;
    console.log(`migrations under load: ${s.note}`);
    expect(
      load.calls.filter((call) => call.status < 200 || call.status > 299).map((call) => call.status),
      'intake answers that were not 2xx',
    ).to.deep.equal([]);
    expect(during.length, 'intake calls answered while migrating').to.be.greaterThan(0);
    // On a machine so loaded that intake was already slow before the deploy, the bound follows it.
    const bound = Math.max(slowestAllowedMs, 2 * slowest(before));
    expect(slowest(during), `slowest intake call while migrating (ms), bound ${bound}`).to.be.below(bound);
    expect(deliveredDuring, 'deliveries while migrating').to.be.greaterThan(0);
    await s.waitDelivered(s.ids.length, 120_000);
    // finish() counts sent rows, and the 500,000 filler rows are sent: wait for the intake's own first.
    await until(
      'every message sent in the database',
      async () =>
        (await s.query<{ n: number }>("SELECT count(*)::int AS n FROM messages WHERE status <> 'sent'"))[0]?.n === 0,
      60_000,
    );
    await s.finish();
  });

  it('the migrator behind PgBouncer in transaction mode: three pods take turns, the CONCURRENTLY build waits out an old snapshot while the others poll', async function () {
    if (!existsSync(pgbouncerBinary)) {
      console.log(`migrator behind PgBouncer: skipped, ${pgbouncerBinary} not installed (apt-get install pgbouncer)`);
      this.skip();
    }
    const s = await begin('migrator behind PgBouncer');
    const bouncer = await startPgBouncer(rig.cluster.port);
    // No start-up `options` (PgBouncer refuses them): the migrator sets what it needs per transaction.
    const pools = [1, 2, 3].map(() =>
      createPool({ connectionString: bouncer.url(s.database), max: 3, transactionPooler: true }),
    );
    const old = new pg.Client({ connectionString: s.databaseUrl() });
    try {
      await old.connect();
      await old.query('BEGIN ISOLATION LEVEL REPEATABLE READ');
      await old.query('SELECT 1');
      const dir = join(release, 'db/migrations');
      const runs = pools.map((pool) => migrate(pool, silentLogger(), { dir, pollMs: 100 }));
      await until('the build waiting for the old snapshot', async () => {
        const waiting = await s.query<{ n: number }>(
          `SELECT count(*)::int AS n FROM pg_stat_activity
           WHERE query LIKE 'CREATE INDEX CONCURRENTLY%' AND wait_event = 'virtualxid'`,
        );
        return waiting[0]?.n === 1;
      });
      await old.query('COMMIT');
      const reports = await Promise.all(runs);
      const files = (await s.query<{ name: string }>('SELECT name FROM schema_migrations ORDER BY version')).map(
        (row) => row.name,
      );
      expect(files).to.include.members(Object.keys(nextReleaseMigrations));
      expect(reports.flatMap((report) => report.applied).sort()).to.deep.equal(files);
      const [index] = await s.query<{ valid: boolean }>(
        "SELECT indisvalid AS valid FROM pg_index WHERE indexrelid = 'messages_load_recipient_idx'::regclass",
      );
      expect(index?.valid).to.equal(true);
      expect(await s.query('SELECT * FROM schema_migrations_lease')).to.deep.equal([]);
    } finally {
      await old.end().catch(() => {});
      await Promise.all(pools.map((pool) => pool.end()));
      await bouncer.stop();
    }
  });
});
