import { expect } from 'chai';
import { type ReceivedItem, type RunningSink, startSink } from '../../src/sink/server.ts';
import { useTestDatabase } from '../support/postgres.ts';
import { startTestPod, stopAll, type TestProcess } from '../support/processes.ts';
import { api, eventually } from '../support/service.ts';

/**
 * Two real service processes on one database and the project's sink: the
 * outbound rate limit and the Retry-After pause hold for both pods together,
 * and a message is not delivered before its sendAt. Timings are read at the
 * sink, as a provider would see them.
 */
describe('outbound rate limit, pause and send-at across two pods', function () {
  this.timeout(180_000);
  const db = useTestDatabase();
  const pods: TestProcess[] = [];
  let sink: RunningSink;
  /** The sink answers 429 once, then accepts again (set by the pause test). */
  let rejectOnce = false;

  before(async () => {
    sink = await startSink({
      onDelivery: (item) => {
        if (rejectOnce && item.status === 429) {
          rejectOnce = false;
          sink.configure({ statusCode: undefined, retryAfterSeconds: undefined });
        }
      },
    });
    const env = {
      DATABASE_URL: db().url,
      WEBHOOK_URL: `${sink.url}/webhook`,
      WEBHOOK_RATE_LIMIT_PER_SECOND: '20',
      WEBHOOK_CONCURRENCY: '10',
      // One run at a time per pod: with two sender jobs, each pod runs one.
      WORKER_COUNT: '1',
    };
    pods.push(...(await Promise.all(['limit-a', 'limit-b'].map((name) => startTestPod(name, env)))));
    await api(pods[0]!.url, 'PUT', '/jobs/stop', { name: 'message-sender' });
    // Two sender jobs, so both pods run sends at the same time.
    for (const name of ['sender-1', 'sender-2']) {
      const created = await api(pods[0]!.url, 'POST', '/jobs', {
        name,
        handler: 'send-messages',
        intervalSeconds: 1,
        batchSize: 200,
        active: true,
      });
      expect(created.status).to.equal(201);
    }
  });
  after(async () => {
    await stopAll(pods);
    await sink.close();
  });
  beforeEach(() => sink.clear());

  const times = (items: ReceivedItem[]) => items.map((item) => Date.parse(item.receivedAt)).sort((a, b) => a - b);
  const metric = async (pod: TestProcess, name: string) => {
    const text = await (await fetch(`${pod.url}/metrics`)).text();
    return text
      .split('\n')
      .filter((line) => line.startsWith(name))
      .reduce((sum, line) => sum + Number(line.split(' ').at(-1)), 0);
  };

  it('with WEBHOOK_RATE_LIMIT_PER_SECOND=20, 200 messages take at least 9 s and no second holds more than 40', async () => {
    const messages = Array.from({ length: 200 }, (_, index) => ({ to: '+905551111111', content: `limited ${index}` }));
    expect((await api(pods[1]!.url, 'POST', '/messages/batch', { messages })).status).to.equal(201);
    await eventually(
      async () => sink.received().accepted,
      (accepted) => accepted >= 200,
      { timeoutMs: 60_000, intervalMs: 250 },
    );
    const report = sink.received();
    expect(report.duplicates).to.deep.equal([]);
    const at = times(report.items);
    expect(at.at(-1)! - at[0]!, 'first to last delivery (ms)').to.be.at.least(9_000);
    let busiest = 0;
    for (let start = 0, end = 0; start < at.length; start += 1) {
      while (end < at.length && at[end]! < at[start]! + 1_000) end += 1;
      busiest = Math.max(busiest, end - start);
    }
    expect(busiest, 'deliveries in the busiest one-second window').to.be.at.most(40);
    // Both pods sent, and both were held back by the shared limit.
    for (const pod of pods) {
      expect(await metric(pod, 'job_manager_messages_sent_total'), pod.name).to.be.greaterThan(0);
      expect(
        await metric(pod, 'job_manager_webhook_deliveries_held_back_total{reason="rate_limit"}'),
        pod.name,
      ).to.be.greaterThan(0);
    }
  });

  it('a 429 with Retry-After: 3 pauses both pods for 3 s', async () => {
    rejectOnce = true;
    sink.configure({ statusCode: 429, retryAfterSeconds: 3 });
    const messages = Array.from({ length: 40 }, (_, index) => ({ to: '+905551111111', content: `paused ${index}` }));
    expect((await api(pods[0]!.url, 'POST', '/messages/batch', { messages })).status).to.equal(201);
    const pausesSeen = await eventually(
      () => Promise.all(pods.map((pod) => metric(pod, 'job_manager_webhook_pause_seconds'))),
      (seconds) => seconds.every((value) => value > 0),
      { timeoutMs: 20_000, intervalMs: 50 },
    );
    expect(pausesSeen.every((value) => value <= 3)).to.equal(true);
    await eventually(
      async () => sink.received().accepted,
      (accepted) => accepted >= 40,
      { timeoutMs: 60_000, intervalMs: 250 },
    );
    const items = sink.received().items;
    const rejected = items.filter((item) => item.status === 429);
    expect(rejected.length).to.be.at.least(1);
    const pausedAt = Date.parse(rejected[0]!.receivedAt);
    // Requests already on the wire when the 429 came may land just after it; nothing else until 3 s later.
    const during = items.filter((item) => {
      const at = Date.parse(item.receivedAt);
      return at > pausedAt + 200 && at < pausedAt + 2_950;
    });
    expect(
      during.map((item) => item.receivedAt),
      'deliveries during the pause',
    ).to.deep.equal([]);
    const after = items.filter((item) => Date.parse(item.receivedAt) >= pausedAt + 2_950);
    expect(after.length).to.be.greaterThan(0);
  });

  it('delivers a message with sendAt 5 s ahead no earlier than that', async () => {
    const sendAt = new Date(Date.now() + 5_000);
    const created = await api(pods[1]!.url, 'POST', '/messages', {
      to: '+905551111111',
      content: 'later',
      sendAt: sendAt.toISOString(),
    });
    expect(created.status).to.equal(201);
    const [item] = await eventually(
      async () => sink.received().items.filter((entry) => entry.idempotencyKey === created.body.id),
      (found) => found.length > 0,
      { timeoutMs: 30_000, intervalMs: 100 },
    );
    expect(Date.parse(item!.receivedAt)).to.be.at.least(sendAt.getTime());
  });

  it('stores one message when both pods get the same Idempotency-Key at the same moment', async () => {
    for (let round = 0; round < 20; round += 1) {
      const content = `idempotent ${round}`;
      const answers = await Promise.all(
        [pods[0]!, pods[1]!, pods[0]!, pods[1]!].map((pod) =>
          api(
            pod.url,
            'POST',
            '/messages',
            { to: '+905551111111', content },
            { 'Idempotency-Key': `two-pods-${round}` },
          ),
        ),
      );
      const stored = await db().pool.query('SELECT count(*)::int AS n FROM messages WHERE content = $1', [content]);
      expect(stored.rows[0].n, `round ${round}`).to.equal(1);
      for (const answer of answers) expect([201, 409]).to.include(answer.status);
      const ids = new Set(answers.filter((answer) => answer.status === 201).map((answer) => answer.body.id));
      expect(ids.size, `round ${round}`).to.equal(1);
    }
  });
});
