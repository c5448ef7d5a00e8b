import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'chai';
import pg from 'pg';
import { PgBoss } from 'pg-boss';
import { createClient } from 'redis';
import { PgCluster, sleep } from './support/cluster.ts';
import { type FaultRig, printTable, results, Scenario, waitHealthy } from './support/kit.ts';
import { http, startPod, stopPods } from './support/pods.ts';
import { Receiver } from './support/receiver.ts';
import { OwnRedis } from './support/redis.ts';
import { startToxiproxy } from './support/toxiproxy.ts';

/**
 * The fault-injection suite (`npm run test:faults`, issue 9): real service
 * processes (src/main.ts), a PostgreSQL cluster the suite owns and stops,
 * restarts and freezes, Toxiproxy between the service and PostgreSQL and
 * between the service and the webhook, and a recording webhook. Every
 * scenario ends with the same checks (Scenario.finish): none lost, none
 * stuck, each message delivered once by Idempotency-Key (a resend, same key,
 * only after a SIGKILL), processes alive, health back to 200.
 */
describe('fault injection', function () {
  this.timeout(180_000);
  const rig = {} as FaultRig;
  let scenario: Scenario | undefined;
  const begin = async (name: string) => {
    scenario = new Scenario(rig, name);
    await scenario.createDatabase();
    return scenario;
  };
  const skipWithoutProxy = (context: Mocha.Context, name: string) => {
    if (rig.toxiproxy) return;
    results.push({
      scenario: name,
      messages: 0,
      delivered: 0,
      resends: 0,
      lost: 0,
      recoverySeconds: undefined,
      outcome: 'skipped',
      note: 'Toxiproxy not installed',
    });
    context.skip();
  };
  const until = async (what: string, probe: () => boolean | Promise<boolean>, timeoutMs = 30_000) => {
    const deadline = Date.now() + timeoutMs;
    while (!(await probe())) {
      if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms`);
      await sleep(50);
    }
  };
  const twoPods = async (s: Scenario, env: Record<string, string>) => {
    const [a, b] = await Promise.all([s.pod('a', env), s.pod('b', env)]);
    await s.quietDefaultJob(a!);
    return [a!, b!] as const;
  };

  before(async function () {
    this.timeout(120_000);
    rig.cluster = await PgCluster.create();
    rig.receiver = await new Receiver().start();
    rig.toxiproxy = await startToxiproxy();
    if (rig.toxiproxy) {
      rig.pgProxyPort = (await rig.toxiproxy.proxy('postgres', `127.0.0.1:${rig.cluster.port}`)).port;
      rig.webhookProxyPort = (await rig.toxiproxy.proxy('webhook', `127.0.0.1:${rig.receiver.port}`)).port;
    } else {
      console.log('Toxiproxy server not found (go install github.com/Shopify/toxiproxy/v2/cmd/server@v2.12.0):');
      console.log('the proxy scenarios are skipped, every other scenario runs.');
    }
  });

  afterEach(async function () {
    if (this.currentTest?.state === 'failed' && scenario && !results.some((row) => row.scenario === scenario!.name)) {
      results.push({
        scenario: scenario.name,
        messages: scenario.ids.length,
        delivered: scenario.ids.filter((id) => rig.receiver.acceptedCount(id) > 0).length,
        resends: 0,
        lost: Number.NaN,
        recoverySeconds: undefined,
        outcome: 'failed',
      });
      for (const pod of scenario.pods) console.log(`--- ${pod.name} (last lines)\n${pod.output()}`);
    }
    rig.cluster.freeze(false);
    if (
      !(await rig.cluster.query('SELECT 1').then(
        () => true,
        () => false,
      ))
    )
      await rig.cluster.start().catch(() => {});
    await scenario?.cleanUp();
    scenario = undefined;
  });

  after(async () => {
    await rig.toxiproxy?.stop();
    await rig.receiver?.close();
    await rig.cluster?.destroy();
    console.log(`\nfault scenarios\n${printTable(results)}\n`);
  });

  it('1. PostgreSQL stopped for 5 s while 10 sends are in flight: outcomes kept, nothing sent twice', async () => {
    const s = await begin('1. database stopped 5 s mid-send');
    rig.receiver.latencyMs = 3_000;
    const pod = await s.pod('a', s.env());
    await s.quietDefaultJob(pod);
    await s.seed(pod, 10);
    await s.senders(pod, 1, 10, 3_600);
    await until('all 10 at the webhook', () => rig.receiver.arrived >= 10);
    await rig.cluster.stop();
    await sleep(5_000);
    await rig.cluster.start();
    s.faultEnded();
    await s.finish({ allSentWithinMs: 60_000 });
    expect(rig.receiver.arrived, 'the webhook saw each message once').to.equal(10);
    expect(pod.logged(/could not record delivery outcomes/)).to.not.be.empty;
  });

  it('2. PostgreSQL down: 503 unavailable with Retry-After, health 503 within 5 s, both back on their own', async () => {
    const s = await begin('2. 503 while the database is down');
    const pod = await s.pod('a', s.env());
    await s.quietDefaultJob(pod);
    await s.seed(pod, 200);
    await s.senders(pod, 1, 200, 1);
    await s.waitDelivered(200);
    await rig.cluster.stop();
    const stoppedAt = Date.now();
    await until('health 503', async () => (await http(pod.url, 'GET', '/health-check')).status === 503, 5_000);
    const healthDownAfter = Date.now() - stoppedAt;
    for (const [method, path, body] of [
      ['POST', '/messages', { to: '+905551111111', content: 'during the outage' }],
      ['GET', '/messages/sent', undefined],
      ['GET', '/jobs', undefined],
      ['PUT', '/jobs/start', { name: 'sender-0' }],
    ] as const) {
      const answer = await http(pod.url, method, path, body, 15_000);
      expect([answer.status, answer.body?.error?.code], `${method} ${path}`).to.deep.equal([503, 'unavailable']);
      expect(Number(answer.headers.get('retry-after')), `${method} ${path}: Retry-After`).to.be.greaterThan(0);
    }
    await rig.cluster.start();
    s.faultEnded();
    expect(await waitHealthy(pod)).to.equal(200);
    s.recoveryAt = Date.now();
    const after = await http(pod.url, 'POST', '/messages', { to: '+905551111111', content: 'after the outage' });
    expect(after.status).to.equal(201);
    s.ids.push(after.body.id);
    s.note = `health 503 after ${(healthDownAfter / 1000).toFixed(1)} s`;
    await s.finish();
  });

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

  it('4. half-open connections to PostgreSQL (Toxiproxy): calls time out, work resumes on fresh connections within 30 s, SIGTERM still exits', async function () {
    skipWithoutProxy(this, '4. half-open database connections');
    const s = await begin('4. half-open database connections');
    rig.receiver.latencyMs = 30;
    const [a] = await twoPods(s, s.env({ SHUTDOWN_TIMEOUT_MS: '3000' }, { db: true }));
    await s.seed(a, 2_000);
    await s.senders(a, 2, 200, 1);
    await s.waitDelivered(300);
    const proxy = await rig.toxiproxy!.client.get('postgres');
    // Every byte on every connection is dropped for 8 s: the connections open now
    // never get their replies (half-open); new ones work once the toxic is gone.
    const toxics = await Promise.all(
      (['upstream', 'downstream'] as const).map((stream) =>
        proxy.addToxic({
          name: `blackhole-${stream}`,
          type: 'timeout',
          stream,
          toxicity: 1,
          attributes: { timeout: 0 },
        }),
      ),
    );
    await sleep(8_000);
    await Promise.all(toxics.map((toxic) => toxic.remove()));
    s.faultEnded();
    await s.finish({ allSentWithinMs: 120_000 });
    expect(s.recoveryAt! - s.faultEndedAt!, 'deliveries resumed').to.be.below(30_000);
    const sigterm = Date.now();
    a.signal('SIGTERM');
    const exit = await a.exited;
    expect(exit.at - sigterm, 'exit after SIGTERM').to.be.below(3_000 + 2_000);
  });

  it('5. shutdown with a webhook answering after 8 s, and with a hung database: exit within SHUTDOWN_TIMEOUT_MS + 2 s', async () => {
    const s = await begin('5. shutdown: slow webhook, hung database');
    // Requests aborted at the deadline may still be processed by the webhook; their
    // messages are handed back and sent again later with the same Idempotency-Key.
    s.resendsAllowed = true;
    const env = s.env({ SHUTDOWN_TIMEOUT_MS: '2000', WEBHOOK_TIMEOUT_MS: '10000', MESSAGE_LEASE_SECONDS: '20' });
    rig.receiver.latencyMs = 8_000;
    const first = await s.pod('a', env);
    await s.quietDefaultJob(first);
    await s.seed(first, 20);
    await s.senders(first, 1, 20, 3_600);
    await until('requests in flight', () => rig.receiver.arrived >= 10);
    let sigterm = Date.now();
    first.signal('SIGTERM');
    let exit = await first.exited;
    expect(exit.at - sigterm, 'exit with a slow webhook').to.be.below(2_000 + 2_000);
    expect(exit.code).to.equal(0);
    const handedBack = await s.query<{ status: string; attempts: number; n: number }>(
      'SELECT status, attempts, count(*)::int AS n FROM messages GROUP BY 1, 2 ORDER BY 1, 2',
    );
    expect(handedBack, 'aborted sends handed back, attempt not counted').to.deep.equal([
      { status: 'pending', attempts: 0, n: 20 },
    ]);
    const slowExit = exit.at - sigterm;
    // Now the database hangs (every PostgreSQL process stopped) while a run is in flight.
    rig.receiver.latencyMs = 1_500;
    rig.receiver.policy = () => ({ kind: 'hang' });
    const second = await s.pod('b', env);
    await http(second.url, 'PUT', '/jobs/stop', { name: 'sender-0' });
    await http(second.url, 'PUT', '/jobs/start', { name: 'sender-0' });
    await until('requests in flight', () => rig.receiver.arrived >= 15);
    rig.cluster.freeze(true);
    sigterm = Date.now();
    second.signal('SIGTERM');
    exit = await second.exited;
    rig.cluster.freeze(false);
    expect(exit.at - sigterm, 'exit with a hung database').to.be.below(2_000 + 2_000);
    s.note = `exits after ${(slowExit / 1000).toFixed(1)} s and ${((exit.at - sigterm) / 1000).toFixed(1)} s`;
    // Whatever the hung database could not take back is sent again after its lease, same key.
    rig.receiver.reset();
    await s.pod('c', env);
    s.faultEnded();
    await s.finish({ allSentWithinMs: 60_000 });
  });

  it('6. one execution per run: a pod frozen mid-run (300 s job lease) is not doubled by a pg-boss retry', async () => {
    const s = await begin('6. frozen pod, pg-boss retry');
    rig.receiver.latencyMs = 300;
    const env = s.env({ JOB_LEASE_SECONDS: '300', WEBHOOK_CONCURRENCY: '5' });
    const [a, b] = await twoPods(s, env);
    await s.seed(a, 500);
    await s.senders(a, 1, 400, 3_600);
    await until('run in flight', () => rig.receiver.arrived >= 20);
    const [job] = await s.query<{ locked_by: string }>("SELECT locked_by FROM jobs WHERE name = 'sender-0'");
    const holder = [a, b].find((pod) => pod.name === job!.locked_by)!;
    expect(holder, `run held by ${job?.locked_by}`).to.not.equal(undefined);
    holder.signal('SIGSTOP');
    const frozenAt = Date.now();
    // pg-boss retries a run whose worker stopped heartbeating; to be sure one
    // arrives while the holder is frozen, the same run is also queued again here.
    const [queued] = await s.query<{ data: object }>(
      "SELECT data FROM pgboss.job WHERE name = 'job-runs' ORDER BY created_on DESC LIMIT 1",
    );
    const boss = new PgBoss({ connectionString: s.databaseUrl(), schema: 'pgboss', supervise: false, schedule: false });
    await boss.start();
    await boss.send('job-runs', queued!.data);
    await boss.stop({ graceful: false, close: true });
    const other = holder === a ? b : a;
    await until(
      'the other pod skipped the second execution',
      async () =>
        /job_runs_total\{job="sender-0",outcome="stale"\} [1-9]/.test((await http(other.url, 'GET', '/metrics')).body),
      15_000,
    );
    // FAULT_FREEZE_MS=80000 reproduces the 80 s freeze (pg-boss's own heartbeat retry then arrives too).
    await sleep(Math.max(0, Number(process.env.FAULT_FREEZE_MS ?? 25_000) - (Date.now() - frozenAt)));
    holder.signal('SIGCONT');
    s.faultEnded();
    await until(
      'the run ended',
      async () =>
        (await s.query<{ status: string }>("SELECT status FROM jobs WHERE name = 'sender-0'"))[0]?.status === 'active',
      60_000,
    );
    // Sends whose timer ran out during the freeze went back to pending; what counts is
    // that the run claimed its batch once: no second execution claimed more.
    const [tried] = await s.query<{ n: number }>('SELECT count(*)::int AS n FROM messages WHERE attempts > 0');
    expect(tried!.n, 'messages claimed by the one run of batch 400').to.be.within(1, 400);
    const keys = new Set(rig.receiver.deliveries.map((delivery) => delivery.key));
    expect(keys.size, 'messages that reached the webhook').to.be.at.most(400);
    const stale = (
      await Promise.all([a, b].map(async (pod) => (await http(pod.url, 'GET', '/metrics')).body as string))
    ).reduce(
      (sum, text) => sum + Number(/job_runs_total\{job="sender-0",outcome="stale"\} (\d+)/.exec(text)?.[1] ?? 0),
      0,
    );
    const [retries] = await s.query<{ n: number }>(
      "SELECT coalesce(sum(retry_count), 0)::int AS n FROM pgboss.job WHERE name = 'job-runs'",
    );
    s.note = `pg-boss retries ${retries!.n}, second executions fenced off ${stale}`;
    expect(stale).to.be.at.least(1);
    const [counted] = await s.query<{ run_count: number }>("SELECT run_count::int FROM jobs WHERE name = 'sender-0'");
    expect(counted!.run_count).to.equal(1);
    // The rest goes with the next run.
    await http(a.url, 'PUT', '/jobs/stop', { name: 'sender-0' });
    await http(a.url, 'PUT', '/jobs/start', { name: 'sender-0' });
    rig.receiver.latencyMs = 0;
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

  it('8. a pod clock 1 h behind: HTTP-date Retry-After read against the Date header; Redis holds the database sent_at', async () => {
    const s = await begin('8. app clock 1 h behind');
    const redis = await OwnRedis.start();
    try {
      let refused: string | undefined;
      rig.receiver.policy = (key) => {
        if (refused === undefined || refused === key) {
          if (refused === undefined) {
            refused = key;
            const now = Date.now();
            return {
              kind: 'status',
              status: 503,
              headers: { date: new Date(now).toUTCString(), 'retry-after': new Date(now + 60_000).toUTCString() },
            };
          }
        }
        return { kind: 'accept' };
      };
      const pod = await s.pod(
        'a',
        s.env({ FAULT_CLOCK_OFFSET_MS: String(-3_600_000), ...(redis ? { REDIS_URL: redis.url } : {}) }),
      );
      await s.quietDefaultJob(pod);
      await s.seed(pod, 5);
      await s.senders(pod, 1, 5, 1);
      await s.waitDelivered(4);
      await until(
        'the refused message recorded',
        async () =>
          (await s.query<{ status: string }>(`SELECT status FROM messages WHERE id = '${refused}'`))[0]?.status ===
          'pending',
      );
      const [parked] = await s.query<{ wait: number }>(
        `SELECT extract(epoch FROM next_attempt_at - now())::float8 AS wait FROM messages WHERE id = '${refused}'`,
      );
      expect(parked!.wait, 'parked for the 60 s the webhook asked').to.be.within(45, 62);
      s.note = `parked ${parked!.wait.toFixed(0)} s`;
      // Backdate instead of waiting the minute out.
      await s.query(`UPDATE messages SET next_attempt_at = now() WHERE id = '${refused}'`);
      await s.finish();
      if (redis) {
        const client = createClient({ url: redis.url });
        await client.connect();
        const rows = await s.query<{ id: string; sent_at: Date }>('SELECT id, sent_at FROM messages');
        for (const row of rows) {
          const cached = JSON.parse((await client.get(`job-manager:sent:${row.id}`)) ?? '{}');
          expect(cached.sentAt, `cached sentAt of ${row.id}`).to.equal(row.sent_at.toISOString());
        }
        client.destroy();
      }
    } finally {
      await redis?.stop();
    }
  });

  it('9. webhook outage of 40 s with default settings: the breaker opens, no message fails, all delivered after', async () => {
    const s = await begin('9. webhook outage 40 s');
    rig.receiver.latencyMs = 20;
    const viaProxy = rig.toxiproxy !== undefined;
    const [a, b] = await twoPods(s, s.env({}, { webhook: viaProxy }));
    await s.seed(a, 2_000);
    await s.senders(a, 2, 200, 1);
    await s.waitDelivered(200);
    // 20 s of 503s, then (with Toxiproxy) 20 s of refused connections.
    rig.receiver.policy = () => ({ kind: 'status', status: 503 });
    await sleep(6_000);
    const states = await Promise.all(
      [a, b].map(async (pod) => (await http(pod.url, 'GET', '/health-check')).body?.checks?.delivery),
    );
    expect(
      states.some((state) => state === 'open' || state === 'half-open'),
      `delivery: ${states}`,
    ).to.equal(true);
    // Whichever pod held runs when the outage began opened its breaker; it may be only one of them.
    const scrapes = await Promise.all(
      [a, b].map(async (pod) => (await http(pod.url, 'GET', '/metrics')).body as string),
    );
    expect(
      scrapes.some((metrics) => /job_manager_webhook_breaker_opened_total [1-9]/.test(metrics)),
      'a breaker opened on some pod',
    ).to.equal(true);
    await sleep(14_000);
    if (viaProxy) {
      const proxy = await rig.toxiproxy!.client.get('webhook');
      rig.receiver.policy = () => ({ kind: 'accept' });
      await proxy.update({ enabled: false, listen: proxy.listen, upstream: proxy.upstream });
      await sleep(20_000);
      await proxy.update({ enabled: true, listen: proxy.listen, upstream: proxy.upstream });
    } else {
      await sleep(20_000);
      rig.receiver.policy = () => ({ kind: 'accept' });
    }
    s.faultEnded();
    s.note = viaProxy ? '20 s of 503s, 20 s refused' : '40 s of 503s';
    await s.finish({ allSentWithinMs: 150_000 });
  });

  it('10. embedded mode: a stale postmaster.pid naming another program is never signalled', async () => {
    const s = await begin('10. embedded: stale postmaster.pid');
    const dataDir = mkdtempSync(join(tmpdir(), 'jm-faults-embedded-'));
    const bystander = spawn(process.execPath, ['-e', "process.on('SIGINT', () => {}); setInterval(() => {}, 1000)"], {
      stdio: 'ignore',
    });
    try {
      const env = { DATA_DIR: dataDir, WEBHOOK_URL: rig.receiver.url };
      const first = await startPod('embedded-a', env, 90_000);
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
      const second = await startPod('embedded-b', env, 60_000);
      s.pods.push(second);
      const upAfter = Date.now() - started;
      expect(upAfter, 'no 30 s wait for the other program').to.be.below(20_000);
      expect(bystander.exitCode, 'the other program was left alone').to.equal(null);
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
      await stopPods([second]);
    } finally {
      bystander.kill('SIGKILL');
      rmSync(dataDir, { recursive: true, force: true });
    }
  });

  it('PostgreSQL restarted mid-run and down for 20 s: 503s meanwhile, everything resumes, nothing sent twice', async () => {
    const s = await begin('PostgreSQL down 20 s mid-run');
    rig.receiver.latencyMs = 20;
    const [a, b] = await twoPods(s, s.env());
    await s.seed(a, 2_000);
    await s.senders(a, 2, 200, 1);
    await s.waitDelivered(300);
    await rig.cluster.stop();
    const stoppedAt = Date.now();
    await until(
      'both pods report 503',
      async () => {
        const statuses = await Promise.all(
          [a, b].map(async (pod) => (await http(pod.url, 'GET', '/health-check')).status),
        );
        return statuses.every((status) => status === 503);
      },
      5_000,
    );
    const intake = await http(a.url, 'POST', '/messages', { to: '+905551111111', content: 'x' }, 15_000);
    expect([intake.status, intake.headers.get('retry-after') !== null]).to.deep.equal([503, true]);
    await sleep(Math.max(0, 20_000 - (Date.now() - stoppedAt)));
    await rig.cluster.start();
    s.faultEnded();
    await s.finish({ allSentWithinMs: 90_000 });
  });

  it('SIGKILL of a pod every few seconds while another keeps running: nothing lost, resends only with the same key', async () => {
    const s = await begin('SIGKILL a pod every 3 s');
    s.resendsAllowed = true;
    rig.receiver.latencyMs = 20;
    const env = s.env({ MESSAGE_LEASE_SECONDS: '10', JOB_LEASE_SECONDS: '5' });
    const [a] = await twoPods(s, env);
    await s.seed(a, 2_000);
    await s.senders(a, 2, 100, 1);
    for (let round = 0; round < 4; round += 1) {
      await sleep(3_000);
      const victim = s.pods.filter((pod) => pod !== a && pod.alive).at(-1)!;
      victim.killGroup();
      await victim.exited;
      await s.pod(`b${round + 1}`, env);
    }
    s.faultEnded();
    await s.finish({ allSentWithinMs: 90_000 });
  });

  it('SIGTERM of every pod mid-run, then a restart: clean exits, work handed back, nothing sent twice', async () => {
    const s = await begin('SIGTERM all pods, restart');
    rig.receiver.latencyMs = 30;
    const env = s.env({ SHUTDOWN_TIMEOUT_MS: '3000' });
    const [a, b] = await twoPods(s, env);
    await s.seed(a, 2_000);
    await s.senders(a, 2, 200, 1);
    await s.waitDelivered(500);
    const sigterm = Date.now();
    for (const pod of [a, b]) pod.signal('SIGTERM');
    const exits = await Promise.all([a.exited, b.exited]);
    for (const exit of exits) {
      expect(exit.code).to.equal(0);
      expect(exit.at - sigterm).to.be.below(3_000 + 2_000);
    }
    const [sending] = await s.query<{ n: number }>("SELECT count(*)::int AS n FROM messages WHERE status = 'sending'");
    expect(sending!.n, 'no lease left behind').to.equal(0);
    await Promise.all([s.pod('c', env), s.pod('d', env)]);
    s.faultEnded();
    await s.finish();
  });

  it('Redis stopped mid-run: sending goes on, readiness stays 200', async () => {
    const s = await begin('Redis stopped mid-run');
    const redis = await OwnRedis.start();
    if (!redis) throw new Error('redis-server is not installed');
    rig.receiver.latencyMs = 10;
    const [a, b] = await twoPods(s, s.env({ REDIS_URL: redis.url }));
    await s.seed(a, 2_000);
    await s.senders(a, 2, 200, 1);
    await s.waitDelivered(300);
    await redis.stop();
    s.faultEnded();
    await s.finish();
    const health = await http(b.url, 'GET', '/health-check');
    expect([health.status, health.body.checks.redis]).to.deep.equal([200, 'down']);
  });

  it('webhook answering 500 to 30% and hanging on 10% of calls: everything delivered, once each', async () => {
    const s = await begin('webhook 30% 500, 10% hang');
    rig.receiver.policy = () => {
      const roll = Math.random();
      if (roll < 0.3) return { kind: 'status', status: 500 };
      if (roll < 0.4) return { kind: 'hang' };
      return { kind: 'accept' };
    };
    const [a] = await twoPods(
      s,
      s.env({
        WEBHOOK_TIMEOUT_MS: '2000',
        MESSAGE_LEASE_SECONDS: '10',
        WEBHOOK_MAX_ATTEMPTS: '15',
        WEBHOOK_RETRY_BASE_MS: '200',
        WEBHOOK_RETRY_MAX_MS: '2000',
      }),
    );
    await s.seed(a, 600);
    await s.senders(a, 2, 200, 1);
    try {
      await s.finish({ allSentWithinMs: 170_000 });
    } finally {
      if (process.env.FAULTS_DEBUG)
        for (const pod of s.pods)
          console.log(
            pod.name,
            pod.lines
              .filter((line) => !/request|will retry/.test(String(line.msg)))
              .slice(-40)
              .map(
                (line) => `${line.time} ${line.job ?? ''} ${line.msg} ${line.claimed ?? ''} ${line.handedBack ?? ''}`,
              )
              .join('\n'),
          );
    }
  });
});
