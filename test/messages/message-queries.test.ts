import { expect } from 'chai';
import pg from 'pg';
import {
  claimMessages,
  countPendingMessages,
  getMessage,
  insertMessage,
  insertMessages,
  listMessages,
  recordDeliveryOutcomes,
  releaseExpiredMessageLeases,
} from '../../src/db/sqlc/messages_sql.ts';
import { useTestDatabase } from '../support/postgres.ts';

/** The message queries and their invariants, against a real PostgreSQL. */
describe('message queries', () => {
  const db = useTestDatabase();
  const pool = () => db().pool;
  const claim = (owner: string, maxMessages: number, leaseSeconds = 60) =>
    claimMessages(pool(), { owner, maxMessages, leaseSeconds });
  const seed = (count: number) =>
    insertMessages(pool(), {
      recipients: Array.from({ length: count }, () => '+905551111111'),
      contents: Array.from({ length: count }, (_, index) => `m${index}`),
      sendAts: Array.from({ length: count }, () => ''),
    });

  beforeEach(async () => {
    await pool().query('DELETE FROM messages');
  });

  it('inserts a batch in request order, created_at never going backwards', async () => {
    const rows = await seed(50);
    expect(rows.map((row) => row.content)).to.deep.equal(Array.from({ length: 50 }, (_, i) => `m${i}`));
    for (let i = 1; i < rows.length; i += 1) {
      expect(rows[i]!.createdAt.getTime()).to.be.at.least(rows[i - 1]!.createdAt.getTime());
    }
    expect((await countPendingMessages(pool()))?.total).to.equal('50');
  });

  it('refuses what the schema forbids', async () => {
    for (const [recipient, content, constraint] of [
      ['905551111111', 'x', 'messages_recipient_e164'],
      ['+905551111111', '', 'messages_content_not_empty'],
    ] as const) {
      const error = await insertMessage(pool(), { recipient, content, sendAt: null }).catch((failure) => failure);
      expect(error.constraint).to.equal(constraint);
    }
    const [row] = await seed(1);
    const broken = await pool()
      .query("UPDATE messages SET status = 'sent' WHERE id = $1", [row!.id])
      .catch((failure) => failure);
    expect(broken.constraint).to.equal('messages_sent_has_receipt');
  });

  it('claims the oldest first, and concurrent claimers never get the same message', async () => {
    const rows = await seed(100);
    const first = await claim('pod-a', 10);
    expect(first.map((row) => row.id).sort()).to.deep.equal(
      rows
        .slice(0, 10)
        .map((row) => row.id)
        .sort(),
    );
    expect(first.every((row) => row.attempts === 1)).to.equal(true);
    // Ten claimers at once, each in its own connection, for the remaining 90.
    const claims = await Promise.all(Array.from({ length: 10 }, (_, i) => claim(`pod-${i}`, 12)));
    const ids = claims.flat().map((row) => row.id);
    expect(new Set(ids).size).to.equal(ids.length);
    expect(ids.length).to.equal(90);
    expect(await claim('late', 10)).to.deep.equal([]);
  });

  it('skips rows another transaction holds instead of waiting for them', async () => {
    const rows = await seed(3);
    const holder = new pg.Client({ connectionString: db().url });
    await holder.connect();
    try {
      await holder.query('BEGIN');
      await holder.query('SELECT id FROM messages WHERE id = $1 FOR UPDATE', [rows[0]!.id]);
      const claimed = await claim('pod-b', 3);
      expect(claimed.map((row) => row.id).sort()).to.deep.equal([rows[1]!.id, rows[2]!.id].sort());
    } finally {
      await holder.query('ROLLBACK');
      await holder.end();
    }
  });

  it('does not claim a message before its next attempt is due', async () => {
    const [row] = await seed(1);
    await pool().query("UPDATE messages SET next_attempt_at = now() + interval '1 hour' WHERE id = $1", [row!.id]);
    expect(await claim('pod-a', 5)).to.deep.equal([]);
  });

  it('records sent, retry and failed outcomes of a chunk in one statement', async () => {
    await seed(3);
    const [a, b, c] = (await claim('pod-a', 3)).sort((x, y) => x.createdAt.getTime() - y.createdAt.getTime());
    const updated = await recordDeliveryOutcomes(pool(), {
      owner: 'pod-a',
      ids: [a!.id, b!.id, c!.id],
      statuses: ['sent', 'pending', 'failed'],
      externalMessageIds: ['ext-1', '', ''],
      errors: ['', 'HTTP 503', 'HTTP 400: bad number'],
      retryDelaysMs: [0, 60_000, 0],
    });
    expect(updated).to.have.length(3);
    const [sent, retry, failed] = await Promise.all([a, b, c].map((row) => getMessage(pool(), { id: row!.id })));
    expect(sent).to.include({ status: 'sent', externalMessageId: 'ext-1', lastError: null });
    expect(sent!.sentAt).to.be.instanceOf(Date);
    expect(retry).to.include({ status: 'pending', lastError: 'HTTP 503', attempts: 1 });
    expect(failed).to.include({ status: 'failed', lastError: 'HTTP 400: bad number' });
    expect(await claim('pod-a', 5), 'the retry waits for its delay').to.deep.equal([]);
  });

  it('a sender that lost its lease cannot overwrite the new holder, except with the truth that it was sent', async () => {
    await seed(2);
    const [first, second] = await claim('pod-a', 2, 1);
    await pool().query("UPDATE messages SET lease_until = now() - interval '1 second'");
    expect(await releaseExpiredMessageLeases(pool())).to.have.length(2);
    const retaken = await claim('pod-b', 2);
    expect(retaken.every((row) => row.attempts === 2)).to.equal(true);
    const stale = await recordDeliveryOutcomes(pool(), {
      owner: 'pod-a',
      ids: [first!.id, second!.id],
      statuses: ['pending', 'sent'],
      externalMessageIds: ['', 'ext-late'],
      errors: ['timeout', ''],
      retryDelaysMs: [1_000, 0],
    });
    expect(stale.map((row) => row.id)).to.deep.equal([second!.id]);
    expect((await getMessage(pool(), { id: first!.id }))?.status).to.equal('sending');
    expect((await getMessage(pool(), { id: second!.id }))?.status).to.equal('sent');
  });

  it('lists by status newest first', async () => {
    const rows = await seed(5);
    const page = await listMessages(pool(), {
      status: 'pending',
      recipient: null,
      afterCreatedAt: null,
      afterId: null,
      maxRows: 3,
    });
    expect(page.map((row) => row.id)).to.deep.equal(
      rows
        .slice(2)
        .reverse()
        .map((row) => row.id),
    );
    const last = page.at(-1)!;
    const next = await listMessages(pool(), {
      status: 'pending',
      recipient: null,
      afterCreatedAt: last.createdAtCursor,
      afterId: last.id,
      maxRows: 3,
    });
    expect(next.map((row) => row.id)).to.deep.equal(
      rows
        .slice(0, 2)
        .reverse()
        .map((row) => row.id),
    );
  });
});
