import { setTimeout as sleep } from 'node:timers/promises';
import { expect } from 'chai';
import { faultSuite, http, until, waitHealthy } from './support/kit.ts';

/**
 * PostgreSQL faults: stopped mid-send, down (503 with Retry-After), restarted
 * mid-run, half-open connections behind Toxiproxy.
 *
 * Every scenario ends with the same checks (Scenario.finish, support/kit.ts):
 * none lost, none stuck, each message delivered once by Idempotency-Key (a
 * resend, same key, only after a SIGKILL), processes alive, health back to
 * 200. Real service processes (src/main.ts), a PostgreSQL cluster this file
 * owns, a recording webhook, Toxiproxy when installed; the files of
 * `npm run test:faults` share nothing and run in parallel.
 */
describe('fault injection: the database', function () {
  this.timeout(180_000);
  const { rig, begin, skipWithoutProxy, twoPods } = faultSuite();

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
    a.kill('SIGTERM');
    const exit = await a.exited;
    expect(exit.at - sigterm, 'exit after SIGTERM').to.be.below(3_000 + 2_000);
  });
});
