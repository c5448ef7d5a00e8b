import { setTimeout as sleep } from 'node:timers/promises';
import { expect } from 'chai';
import { PgBoss } from 'pg-boss';
import { faultSuite, http, until } from './support/kit.ts';
import type { Reply } from './support/receiver.ts';

/**
 * Process faults: SIGTERM with a slow webhook or a hung database, SIGKILL
 * of pods mid-run, SIGTERM of every pod, a frozen pod and a pg-boss retry.
 *
 * Every scenario ends with the same checks (Scenario.finish, support/kit.ts):
 * none lost, none stuck, each message delivered once by Idempotency-Key (a
 * resend, same key, only after a SIGKILL), processes alive, health back to
 * 200. Real service processes (src/main.ts), a PostgreSQL cluster this file
 * owns, a recording webhook, Toxiproxy when installed; the files of
 * `npm run test:faults` share nothing and run in parallel.
 */
describe('fault injection: the service processes', function () {
  this.timeout(180_000);
  const { rig, begin, twoPods } = faultSuite();

  /**
   * Counts the requests that reach the webhook from now on, answered as
   * `reply` says; with a latency longer than the wait (or a hang) each one
   * counted is a request the webhook holds in flight.
   */
  function holding(reply: Reply = { kind: 'accept' }): { count: number } {
    const held = { count: 0 };
    rig.receiver.policy = () => {
      held.count += 1;
      return reply;
    };
    return held;
  }

  /** The pod's webhook concurrency limit in force (the gauge): adaptive, or WEBHOOK_CONCURRENCY. */
  async function concurrencyLimit(url: string): Promise<number> {
    const text = (await http(url, 'GET', '/metrics')).body as string;
    return Number(/^job_manager_webhook_concurrency_limit (\d+)/m.exec(text)?.[1] ?? Number.NaN);
  }

  it('5. shutdown with a webhook answering after 8 s, and with a hung database: exit within SHUTDOWN_TIMEOUT_MS + 2 s', async () => {
    const s = await begin('5. shutdown: slow webhook, hung database');
    // Requests aborted at the deadline may still be processed by the webhook; their
    // messages are handed back and sent again later with the same Idempotency-Key.
    s.resendsAllowed = true;
    const env = s.env({ SHUTDOWN_TIMEOUT_MS: '2000', WEBHOOK_TIMEOUT_MS: '10000', MESSAGE_LEASE_SECONDS: '20' });
    rig.receiver.latencyMs = 8_000;
    let held = holding();
    const first = await s.pod('a', env);
    await s.quietDefaultJob(first);
    await s.seed(first, 20);
    await s.senders(first, 1, 20, 3_600);
    // The pod holds as many requests in flight as its concurrency limit allows (at most the 20 there are),
    // and the rest of the run waits for a slot: nothing answers for 8 s, so the count cannot move on its own.
    await until('the webhook holds what the pod lets through', async () => {
      const limit = await concurrencyLimit(first.url);
      return held.count >= 1 && held.count === Math.min(20, limit);
    });
    const heldBySlowWebhook = held.count;
    let sigterm = Date.now();
    first.kill('SIGTERM');
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
    held = holding({ kind: 'hang' });
    const second = await s.pod('b', env);
    await http(second.url, 'PUT', '/jobs/stop', { name: 'sender-0' });
    await http(second.url, 'PUT', '/jobs/start', { name: 'sender-0' });
    await until('the webhook holds what the pod lets through', async () => {
      const limit = await concurrencyLimit(second.url);
      return held.count >= 1 && held.count === Math.min(20, limit);
    });
    const heldByHungWebhook = held.count;
    rig.cluster.freeze(true);
    sigterm = Date.now();
    second.kill('SIGTERM');
    exit = await second.exited;
    rig.cluster.freeze(false);
    expect(exit.at - sigterm, 'exit with a hung database').to.be.below(2_000 + 2_000);
    s.note =
      `exits after ${(slowExit / 1000).toFixed(1)} s and ${((exit.at - sigterm) / 1000).toFixed(1)} s, ` +
      `with ${heldBySlowWebhook} and ${heldByHungWebhook} requests in flight`;
    // Whatever the hung database could not take back is sent again after its lease, same key.
    rig.receiver.reset();
    await s.pod('c', env);
    s.faultEnded();
    await s.finish({ allSentWithinMs: 60_000 });
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
    for (const pod of [a, b]) pod.kill('SIGTERM');
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

  it('6. one execution per run: a pod frozen mid-run (300 s job lease) is not doubled by a pg-boss retry', async () => {
    const s = await begin('6. frozen pod, pg-boss retry');
    // 100 ms a send, at most 5 at a time (the adaptive limit's ceiling): the run of 400 lasts at least 8 s,
    // long enough to be frozen mid-run, whatever the limit does below 5.
    rig.receiver.latencyMs = 100;
    const env = s.env({ JOB_LEASE_SECONDS: '300', WEBHOOK_CONCURRENCY: '5' });
    const [a, b] = await twoPods(s, env);
    await s.seed(a, 500);
    await s.senders(a, 1, 400, 3_600);
    await until('run in flight', () => rig.receiver.arrived >= 20);
    const [job] = await s.query<{ locked_by: string }>("SELECT locked_by FROM jobs WHERE name = 'sender-0'");
    const holder = [a, b].find((pod) => pod.name === job!.locked_by)!;
    expect(holder, `run held by ${job?.locked_by}`).to.not.equal(undefined);
    holder.kill('SIGSTOP');
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
    // Not shorter than 25 s: a freeze that ends just as the sends in flight time out (5 s) resends them.
    await sleep(Math.max(0, Number(process.env.FAULT_FREEZE_MS ?? 25_000) - (Date.now() - frozenAt)));
    holder.kill('SIGCONT');
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
});
