import { expect } from 'chai';
import { type RunningSink, startSink } from '../../src/sink/server.ts';
import { useTestDatabase } from '../support/postgres.ts';
import { startTestPod, stopAll, type TestProcess } from '../support/processes.ts';
import { api, eventually, startTestService, type TestService } from '../support/service.ts';

/**
 * Pods against one database and the project's webhook sink: nothing lost,
 * nothing sent twice, and after a SIGKILL every message still ends sent, any
 * resend carrying the same Idempotency-Key. The pods share nothing but the
 * database, so the first block runs three service instances in this process;
 * the SIGKILL block needs real processes.
 */
describe('message dispatch across processes', function () {
  this.timeout(240_000);

  describe('three pods, 1,000 messages, a 1 s job with batch 100', () => {
    const db = useTestDatabase();
    const pods: TestService[] = [];
    let sink: RunningSink;
    before(async () => {
      sink = await startSink();
      const env = { WEBHOOK_URL: `${sink.url}/webhook`, WEBHOOK_CONCURRENCY: '10' };
      const names = ['send-a', 'send-b', 'send-c'];
      pods.push(...(await Promise.all(names.map((name) => startTestService(db().url, { ...env, INSTANCE_ID: name })))));
    });
    after(async () => {
      await Promise.all(pods.map((pod) => pod.stop()));
      await sink.close();
    });

    it('delivers every message exactly once, roughly oldest first, and lists exactly those as sent', async () => {
      await api(pods[0]!.url, 'PUT', '/jobs/stop', { name: 'message-sender' });
      const ids: string[] = [];
      for (let batch = 0; batch < 4; batch += 1) {
        const messages = Array.from({ length: 250 }, (_, index) => ({
          to: '+905551111111',
          content: `batch ${batch} message ${index}`,
        }));
        const answer = await api(pods[batch % 3]!.url, 'POST', '/messages/batch', { messages });
        expect(answer.status).to.equal(201);
        ids.push(...answer.body.items.map((item: { id: string }) => item.id));
      }
      await api(pods[1]!.url, 'POST', '/jobs', {
        name: 'fast-sender',
        handler: 'send-messages',
        intervalSeconds: 1,
        batchSize: 100,
        active: true,
      });
      await eventually(
        async () => sink.received().unique,
        (unique) => unique === 1000,
        { timeoutMs: 90_000, intervalMs: 500 },
      );
      // The sink has seen each one; their outcomes are recorded a little later (sent, lease released).
      await eventually(
        async () =>
          (
            await db().pool.query(
              "SELECT count(*)::int AS n FROM messages WHERE status <> 'sent' OR locked_by IS NOT NULL",
            )
          ).rows[0].n,
        (unsettled) => unsettled === 0,
        { timeoutMs: 30_000, intervalMs: 250 },
      );
      await new Promise((resolve) => setTimeout(resolve, 1_500)); // a duplicate still in flight would show up now

      const report = sink.received();
      expect(report.duplicates, 'no message was sent twice').to.deep.equal([]);
      expect(report.accepted).to.equal(1000);
      const order = report.items.map((item) => item.idempotencyKey!);
      expect(new Set(order)).to.deep.equal(new Set(ids));
      // Roughly created order: batches of 100 are claimed oldest first (in chunks of 40), so no
      // message arrives more than one batch (plus concurrency) out of place.
      const displacement = order.map((id, position) => Math.abs(ids.indexOf(id) - position));
      expect(Math.max(...displacement)).to.be.below(150);

      const sentIds: string[] = [];
      let cursor: string | null = null;
      do {
        const page: any = await api(
          pods[2]!.url,
          'GET',
          `/messages/sent?limit=100${cursor ? `&cursor=${cursor}` : ''}`,
        );
        sentIds.push(...page.body.items.map((item: { id: string }) => item.id));
        cursor = page.body.nextCursor;
      } while (cursor);
      expect(sentIds).to.have.length(1000);
      expect(new Set(sentIds)).to.deep.equal(new Set(ids));
      const pods_used = await db().pool.query(
        "SELECT count(DISTINCT split_part(locked_by, '/', 1)) AS n FROM messages WHERE locked_by IS NOT NULL",
      );
      expect(Number(pods_used.rows[0].n)).to.equal(0); // every lease released
    });
  });

  describe('a pod killed with SIGKILL while it is sending', () => {
    const db = useTestDatabase();
    const pods: TestProcess[] = [];
    let sink: RunningSink;
    before(async () => {
      // Slow webhook and short leases: the victim is sure to die with sends in flight.
      sink = await startSink({ latencyMs: 1_500 });
      const env = {
        DATABASE_URL: db().url,
        WEBHOOK_URL: sink.url,
        MESSAGE_LEASE_SECONDS: '4',
        WEBHOOK_TIMEOUT_MS: '2000',
        JOB_LEASE_SECONDS: '3',
        WEBHOOK_CONCURRENCY: '10',
      };
      pods.push(...(await Promise.all(['crash-a', 'crash-b', 'crash-c'].map((name) => startTestPod(name, env)))));
    });
    after(async () => {
      await stopAll(pods);
      await sink.close();
    });

    it('loses nothing: after the lease every message ends sent, resends reuse the Idempotency-Key', async () => {
      await api(pods[0]!.url, 'PUT', '/jobs/stop', { name: 'message-sender' });
      const messages = Array.from({ length: 60 }, (_, index) => ({ to: '+905551111111', content: `crash ${index}` }));
      const ids: string[] = (await api(pods[0]!.url, 'POST', '/messages/batch', { messages })).body.items.map(
        (item: { id: string }) => item.id,
      );
      await api(pods[0]!.url, 'POST', '/jobs', {
        name: 'crash-sender',
        handler: 'send-messages',
        intervalSeconds: 1,
        batchSize: 20,
        active: true,
      });
      const inFlight = await eventually(
        async () =>
          (await db().pool.query("SELECT split_part(locked_by, '/', 1) AS pod FROM messages WHERE status = 'sending'"))
            .rows,
        (rows) => rows.length > 0,
      );
      const victim = pods.find((pod) => pod.name === inFlight[0].pod)!;
      victim.kill('SIGKILL');
      await victim.exited;
      pods.splice(pods.indexOf(victim), 1);

      const final = await eventually(
        async () => (await db().pool.query('SELECT id, status, external_message_id FROM messages')).rows,
        (rows) => rows.every((row) => row.status === 'sent'),
        { timeoutMs: 90_000, intervalMs: 500 },
      );
      expect(final.map((row) => row.id).sort()).to.deep.equal([...ids].sort());
      const report = sink.received();
      // Every key the sink saw is one of our message ids, so a resend carries the same key...
      const keys = new Set(report.items.map((item) => item.idempotencyKey));
      expect([...keys].every((key) => ids.includes(key!))).to.equal(true);
      // ...and every message reached it at least once.
      expect(report.unique).to.equal(60);
      // Only messages the victim had in flight can have been sent twice.
      expect(report.duplicates.length).to.be.at.most(inFlight.length + 10);
    });
  });
});
