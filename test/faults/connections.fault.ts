import { expect } from 'chai';
import pg from 'pg';
import { connectionBudget } from '../../src/db/database.ts';
import { PgCluster } from './support/cluster.ts';
import { http, type ServicePod, startFaultPod, until, waitHealthy } from './support/kit.ts';
import { Receiver } from './support/receiver.ts';

/**
 * The connection budget with real pods against a PostgreSQL whose
 * max_connections fits exactly three of them: a burst of API clients on every
 * pod while they deliver is served (2xx, or 503 `unavailable` when a request
 * waited DATABASE_CONNECT_TIMEOUT_MS for a pooled connection; never a 500)
 * without one connection refused in the server's log; a fourth pod started
 * into the full server waits (retrying SQLSTATE 53300) and comes up once
 * slots free. Pods connect as an ordinary role, so the superuser's reserved
 * slots stay free for an operator's psql throughout.
 */
describe('fault injection: the connection budget', function () {
  this.timeout(240_000);
  const poolMax = 6;
  const workers = 2;
  const budget = connectionBudget(poolMax); // main pool + pg-boss + LISTEN
  const reserved = 3; // superuser_reserved_connections' default
  const harness = 2; // this file's own sampling connections (superuser)
  let cluster: PgCluster;
  let receiver: Receiver;
  const pods: ServicePod[] = [];
  let fillers: pg.Client[] = [];
  const appUrl = () => `postgres://app@127.0.0.1:${cluster.port}/budget`;

  before(async function () {
    this.timeout(120_000);
    cluster = await PgCluster.create({
      max_connections: String(3 * budget + reserved + harness),
      superuser_reserved_connections: String(reserved),
    });
    await cluster.query('CREATE ROLE app LOGIN');
    await cluster.query('CREATE DATABASE budget OWNER app');
    receiver = await new Receiver().start();
  });

  after(async () => {
    await Promise.all(fillers.map((client) => client.end().catch(() => {})));
    await Promise.all(pods.map((pod) => pod.stop('SIGTERM', 15_000)));
    await receiver?.close();
    await cluster?.destroy();
  });

  const refusals = () =>
    cluster.log().match(/sorry, too many clients already|remaining connection slots are reserved/g)?.length ?? 0;

  const env = (name: string) => ({
    INSTANCE_ID: name,
    DATABASE_URL: appUrl(),
    DATABASE_POOL_MAX: String(poolMax),
    WORKER_COUNT: String(workers),
    WEBHOOK_URL: receiver.url,
    FETCH_INTERVAL_MS: '1000',
    DATABASE_START_TIMEOUT_MS: '90000',
  });

  it(`three pods (${budget} connections each at most) serve a burst of API clients while delivering, none refused`, async () => {
    pods.push(...(await Promise.all(['a', 'b', 'c'].map((name) => startFaultPod(`budget-${name}`, env(name))))));
    const [a] = pods as [ServicePod];
    expect((await http(a.url, 'PUT', '/jobs/stop', { name: 'message-sender' })).status).to.equal(200);
    for (let offset = 0; offset < 3_000; offset += 1_000) {
      const messages = Array.from({ length: 1_000 }, (_, index) => ({
        to: '+905551111111',
        content: `#${offset + index}`,
      }));
      expect((await http(a.url, 'POST', '/messages/batch', { messages }, 30_000)).status).to.equal(201);
    }
    for (let index = 0; index < 2; index += 1) {
      const job = {
        name: `sender-${index}`,
        handler: 'send-messages',
        intervalSeconds: 1,
        batchSize: 100,
        active: true,
      };
      expect((await http(a.url, 'POST', '/jobs', job)).status).to.equal(201);
    }

    // 20 clients per pod for 15 s: reads, intake and the job list, back to back.
    const statuses = new Map<number, number>();
    let most = 0;
    const until15s = Date.now() + 15_000;
    const client = async (pod: ServicePod, index: number) => {
      for (let round = 0; Date.now() < until15s; round += 1) {
        const answer =
          round % 3 === 0
            ? await http(
                pod.url,
                'POST',
                '/messages',
                { to: '+905551111111', content: `burst ${index}.${round}` },
                15_000,
              )
            : await http(pod.url, 'GET', round % 3 === 1 ? '/messages/sent?limit=50' : '/jobs', undefined, 15_000);
        statuses.set(answer.status, (statuses.get(answer.status) ?? 0) + 1);
        if (answer.status === 503) expect(answer.body?.error?.code).to.equal('unavailable');
      }
    };
    const sampler = (async () => {
      while (Date.now() < until15s) {
        const rows = await cluster.query<{ n: number }>(
          "SELECT count(*)::int AS n FROM pg_stat_activity WHERE usename = 'app'",
        );
        most = Math.max(most, rows[0]!.n);
        await new Promise((resolve) => setTimeout(resolve, 200));
      }
    })();
    await Promise.all([
      ...pods.flatMap((pod) => Array.from({ length: 20 }, (_, index) => client(pod, index))),
      sampler,
    ]);
    const answered = Object.fromEntries(statuses);
    console.log(`burst answers by status: ${JSON.stringify(answered)}; most app connections: ${most} of ${3 * budget}`);

    expect([...statuses.keys()].filter((status) => status !== 503 && (status < 200 || status > 299))).to.deep.equal([]);
    expect(most, 'backends of the three pods').to.be.at.most(3 * budget);
    expect(refusals(), 'connections refused in the server log').to.equal(0);
    for (const pod of pods) expect(await waitHealthy(pod), pod.name).to.equal(200);
    await until('deliveries flowing', () => receiver.accepted >= 500, 60_000);
    // A superuser still gets in (its reserved slots were never touched).
    expect(await cluster.query('SELECT 1 AS ok')).to.deep.equal([{ ok: 1 }]);
  });

  it('a fourth pod started into a full server retries "too many clients" and comes up once slots free', async () => {
    // The three pods leave, and this test takes every slot an ordinary role may have (running pods
    // would free and take slots as their pools shrink and grow, and the server would not stay full).
    await Promise.all(pods.splice(0).map((pod) => pod.stop('SIGTERM', 15_000)));
    fillers = [];
    for (;;) {
      const client = new pg.Client({ connectionString: appUrl() });
      client.on('error', () => {});
      try {
        await client.connect();
        fillers.push(client);
      } catch (error) {
        expect((error as { code?: string }).code).to.equal('53300');
        break;
      }
    }
    const afterFill = refusals();
    const fourth = startFaultPod('budget-d', env('d'), 120_000);
    fourth.catch(() => {});
    const start = Date.now();
    // Its attempts are refused in the server's log, again and again, while the server is full.
    await until('the fourth pod refused twice', () => refusals() >= afterFill + 2, 30_000);
    // Slots free: the fourth pod takes them within its start-up window.
    await Promise.all(fillers.splice(0).map((client) => client.end()));
    const d = await fourth;
    pods.push(d);
    const waited = d.logged(/not reachable yet; retrying$/);
    expect(waited.length, 'retries logged').to.be.at.least(1);
    expect(waited[0]!.reason).to.match(/too many clients|remaining connection slots are reserved/);
    expect(await waitHealthy(d)).to.equal(200);
    console.log(
      `fourth pod: ${waited.length} retries, up ${((Date.now() - start) / 1000).toFixed(1)} s after it started`,
    );
  });
});
