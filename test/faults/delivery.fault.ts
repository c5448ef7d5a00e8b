import { setTimeout as sleep } from 'node:timers/promises';
import { expect } from 'chai';
import { faultSuite, http } from './support/kit.ts';

/**
 * Delivery faults: a webhook outage that opens the breaker, and a flaky
 * webhook (500 to 30% and no answer to 10% of calls, at random, for the whole
 * run, with the breaker at its default: it opens and closes on the way).
 *
 * Every scenario ends with the same checks (Scenario.finish, support/kit.ts):
 * none lost, none stuck, each message delivered once by Idempotency-Key (a
 * resend, same key, only after a SIGKILL), processes alive, health back to
 * 200. Real service processes (src/main.ts), a PostgreSQL cluster this file
 * owns, a recording webhook, Toxiproxy when installed; the files of
 * `npm run test:faults` share nothing and run in parallel.
 */
describe('fault injection: delivery to the webhook', function () {
  this.timeout(180_000);
  const { rig, begin, twoPods } = faultSuite();

  it('9. webhook outage of 16 s with default settings: the breaker opens, no message fails, all delivered after', async () => {
    const s = await begin('9. webhook outage 16 s');
    rig.receiver.latencyMs = 20;
    const viaProxy = rig.toxiproxy !== undefined;
    const [a, b] = await twoPods(s, s.env({}, { webhook: viaProxy }));
    await s.seed(a, 2_000);
    await s.senders(a, 2, 200, 1);
    await s.waitDelivered(200);
    // 8 s of 503s, then (with Toxiproxy) 8 s of refused connections.
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
    await sleep(2_000);
    if (viaProxy) {
      const proxy = await rig.toxiproxy!.client.get('webhook');
      rig.receiver.policy = () => ({ kind: 'accept' });
      await proxy.update({ enabled: false, listen: proxy.listen, upstream: proxy.upstream });
      await sleep(8_000);
      await proxy.update({ enabled: true, listen: proxy.listen, upstream: proxy.upstream });
    } else {
      await sleep(8_000);
      rig.receiver.policy = () => ({ kind: 'accept' });
    }
    s.faultEnded();
    s.note = viaProxy ? '8 s of 503s, 8 s refused' : '16 s of 503s';
    await s.finish({ allSentWithinMs: 150_000 });
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
