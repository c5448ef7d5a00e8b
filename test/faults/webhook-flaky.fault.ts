import { faultSuite } from './support/kit.ts';

/**
 * A flaky webhook: 500 to 30% and no answer to 10% of calls, at random, for
 * the whole run, with the breaker at its default (it opens and closes on
 * the way). On its own file: it is the longest scenario, and the files run
 * in parallel.
 *
 * Every scenario ends with the same checks (Scenario.finish, support/kit.ts):
 * none lost, none stuck, each message delivered once by Idempotency-Key,
 * processes alive, health back to 200.
 */
describe('fault injection: a flaky webhook', function () {
  this.timeout(180_000);
  const { rig, begin, twoPods } = faultSuite();

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
