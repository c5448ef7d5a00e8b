import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'chai';
import pg from 'pg';
import { startBystander, stopAll } from '../support/processes.ts';
import { faultSuite, http, startFaultPod, until } from './support/kit.ts';

/**
 * Environment faults: a frozen LISTEN backend, a database with non-ISO
 * DateStyle/TimeZone/IntervalStyle, a stale postmaster.pid in embedded mode.
 *
 * Every scenario ends with the same checks (Scenario.finish, support/kit.ts):
 * none lost, none stuck, each message delivered once by Idempotency-Key (a
 * resend, same key, only after a SIGKILL), processes alive, health back to
 * 200. Real service processes (src/main.ts), a PostgreSQL cluster this file
 * owns, a recording webhook, Toxiproxy when installed; the files of
 * `npm run test:faults` share nothing and run in parallel.
 */
describe('fault injection: the environment', function () {
  this.timeout(180_000);
  const { rig, begin, twoPods } = faultSuite();

  it('3. frozen LISTEN backend: replaced within 10 s with a warning; a started job runs at once, not at the 30 s poll', async () => {
    const s = await begin('3. frozen LISTEN connection');
    const pod = await s.pod('a', s.env({ FETCH_INTERVAL_MS: '30000' }));
    await s.quietDefaultJob(pod);
    await s.seed(pod, 50);
    const [listener] = await s.query<{ pid: number }>(
      "SELECT pid FROM pg_stat_activity WHERE application_name = 'job-manager fetcher listener'",
    );
    expect(listener, 'the LISTEN backend').to.not.equal(undefined);
    process.kill(listener!.pid, 'SIGSTOP');
    const frozenAt = Date.now();
    try {
      await until('listener replaced', () => pod.logged(/job change listener lost/).length > 0, 10_000);
      const replacedAfter = Date.now() - frozenAt;
      await until('new listener', () => pod.logged(/job change listener replaced/).length > 0, 5_000);
      const started = Date.now();
      await s.senders(pod, 1, 50, 3_600);
      s.faultEnded();
      await s.waitDelivered(1, 10_000);
      const firstDeliveryAfter = Date.now() - started;
      expect(firstDeliveryAfter, 'the new job ran on NOTIFY, not on the 30 s poll').to.be.below(5_000);
      s.note = `replaced after ${(replacedAfter / 1000).toFixed(1)} s`;
    } finally {
      process.kill(listener!.pid, 'SIGCONT');
    }
    await s.finish();
  });

  it('7. a database whose DateStyle, TimeZone and IntervalStyle are not ISO/UTC: nothing changes', async () => {
    const s = await begin('7. non-ISO DateStyle');
    await rig.cluster.query(
      `ALTER DATABASE ${s.database} SET DateStyle = 'SQL, DMY'; ALTER DATABASE ${s.database} SET TimeZone = 'Asia/Kolkata'; ALTER DATABASE ${s.database} SET IntervalStyle = 'sql_standard'`,
    );
    const [a, b] = await twoPods(s, s.env());
    await s.seed(a, 2_000);
    await s.senders(a, 2, 500, 1);
    const one = await http(b.url, 'POST', '/messages', { to: '+905551111111', content: 'one more' });
    expect(one.status).to.equal(201);
    s.ids.push(one.body.id);
    await s.finish();
    const sent = await http(b.url, 'GET', '/messages/sent?limit=5');
    expect(sent.status).to.equal(200);
    expect(sent.body.items).to.have.length(5);
  });

  it('10. embedded mode: a stale postmaster.pid naming another program is never signalled', async () => {
    const s = await begin('10. embedded: stale postmaster.pid');
    const dataDir = mkdtempSync(join(tmpdir(), 'jm-faults-embedded-'));
    const bystander = startBystander("process.on('SIGINT', () => {}); setInterval(() => {}, 1000)");
    try {
      const env = { DATA_DIR: dataDir, WEBHOOK_URL: rig.receiver.url };
      const first = await startFaultPod('embedded-a', env, 90_000);
      await s.quietDefaultJob(first);
      await s.seed(first, 20);
      first.killGroup();
      await first.exited;
      const pidFile = join(dataDir, 'pg', 'postmaster.pid');
      await until('the killed postgres is gone', () => {
        const pid = Number(readFileSync(pidFile, 'utf8').split('\n')[0]);
        try {
          process.kill(pid, 0);
          return false;
        } catch {
          return true;
        }
      });
      const lines = readFileSync(pidFile, 'utf8').split('\n');
      lines[0] = String(bystander.pid);
      writeFileSync(pidFile, lines.join('\n'));
      const started = Date.now();
      const second = await startFaultPod('embedded-b', env, 60_000);
      s.pods.push(second);
      const upAfter = Date.now() - started;
      expect(upAfter, 'no 30 s wait for the other program').to.be.below(20_000);
      expect(bystander.child.exitCode, 'the other program was left alone').to.equal(null);
      expect(second.logged(/not this data directory's PostgreSQL/)).to.not.be.empty;
      const started2 = second.logged(/embedded PostgreSQL started/)[0]!;
      const password = readFileSync(join(dataDir, 'pg-password'), 'utf8').trim();
      const url = `postgres://postgres:${encodeURIComponent(password)}@127.0.0.1:${started2.port}/postgres`;
      s.query = async <T>(sql: string) => {
        const client = new pg.Client({ connectionString: url });
        await client.connect();
        try {
          return (await client.query(sql)).rows as T[];
        } finally {
          await client.end();
        }
      };
      await s.senders(second, 1, 20, 1);
      s.note = `up in ${(upAfter / 1000).toFixed(1)} s`;
      await s.finish();
      await stopAll([second]);
    } finally {
      bystander.kill('SIGKILL');
      rmSync(dataDir, { recursive: true, force: true });
    }
  });
});
