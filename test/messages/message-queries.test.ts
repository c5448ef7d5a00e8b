import { readFileSync } from 'node:fs';
import { expect } from 'chai';
import pg from 'pg';
import {
  cancelMessage,
  countPendingMessages,
  getMessage,
  insertMessage,
  insertMessages,
  listMessages,
  type RecordDeliveryOutcomesArgs,
  recordDeliveryOutcomes,
  releaseExpiredMessageLeases,
  retryMessage,
} from '../../src/db/sqlc/messages_sql.ts';
import { claimDueMessages, promotionBatch } from '../../src/delivery/claim.ts';
import { useTestPool } from '../support/postgres.ts';

/**
 * RecordDeliveryOutcomes arguments for outcomes with no attempt behind them, from parallel arrays ('' for none: an
 * id or error that is SQL null).
 */
const withoutAttempts = (args: {
  owner: string;
  ids: string[];
  statuses: string[];
  externalMessageIds: string[];
  errors: string[];
  retryDelaysMs: number[];
}): RecordDeliveryOutcomesArgs => ({
  owner: args.owner,
  outcomes: JSON.stringify(
    args.ids.map((id, i) => ({
      id,
      status: args.statuses[i],
      external_message_id: args.externalMessageIds[i] || null,
      error: args.errors[i] || null,
      retry_delay_ms: args.retryDelaysMs[i],
    })),
  ),
});

/** The message queries and their invariants, against a real PostgreSQL. */
describe('message queries', () => {
  const { db, pool } = useTestPool();
  // The dispatch loop's claim: due messages promoted, then the oldest available claimed, in one transaction.
  const claim = (owner: string, maxMessages: number, leaseSeconds = 60) =>
    claimDueMessages(pool(), { owner, maxMessages, leaseSeconds, executionId: null });
  const seed = (count: number) =>
    insertMessages(pool(), {
      recipients: Array.from({ length: count }, () => '+905551111111'),
      contents: Array.from({ length: count }, (_, index) => `m${index}`),
      sendAts: Array.from({ length: count }, () => ''),
      traceParent: null,
    });

  /** One message claimed by pod-a whose delivery outcome was recorded as `status`, with `error` and a retry delay (ms). */
  const seedClaimedAndRecorded = async (status: 'pending' | 'failed', error: string, retryDelayMs: number) => {
    const [row] = await seed(1);
    await claim('pod-a', 1);
    await recordDeliveryOutcomes(
      pool(),
      withoutAttempts({
        owner: 'pod-a',
        ids: [row!.id],
        statuses: [status],
        externalMessageIds: [''],
        errors: [error],
        retryDelaysMs: [retryDelayMs],
      }),
    );
    return row!;
  };

  beforeEach(async () => {
    await pool().query('DELETE FROM messages');
  });

  it('sets available in every statement that sets a status or inserts a message (sql/queries/messages.sql)', () => {
    const text = readFileSync(new URL('../../sql/queries/messages.sql', import.meta.url), 'utf8');
    // Each statement without its comment lines.
    const statements = text
      .split(/^-- name: /m)
      .slice(1)
      .map((block) => {
        const [name, ...lines] = block.split('\n');
        return [name, ...lines.filter((line) => !line.trimStart().startsWith('--'))].join('\n');
      });
    const changing = statements.filter((statement) => /\bSET status\b|\bINSERT INTO messages\b/.test(statement));
    expect(changing.map((statement) => statement.split(' ')[0])).to.include.members([
      'InsertMessage',
      'InsertMessages',
      'ReleaseExpiredMessageLeases',
      'ClaimMessages',
      'RecordDeliveryOutcomes',
      'CancelMessage',
      'RetryMessage',
      'RetryFailedMessages',
    ]);
    for (const statement of changing) {
      expect(statement, statement.split(' ')[0]).to.match(/\bavailable\b\s*(=|\))|,\s*available\)/);
    }
  });

  it('inserts a batch in request order, created_at never going backwards', async () => {
    const rows = await seed(50);
    expect(rows.map((row) => row.content)).to.deep.equal(Array.from({ length: 50 }, (_, i) => `m${i}`));
    for (let i = 1; i < rows.length; i += 1) {
      expect(rows[i]!.createdAt.getTime()).to.be.at.least(rows[i - 1]!.createdAt.getTime());
    }
    expect((await countPendingMessages(pool(), { exactUpTo: 10_000 }))?.total).to.equal('50');
  });

  it('counts pending messages exactly up to exact_up_to, then reads the estimate ANALYZE left', async () => {
    await seed(50);
    await pool().query("UPDATE messages SET status = 'cancelled' WHERE content IN ('m0', 'm1')");
    const count = async (exactUpTo: number) => (await countPendingMessages(pool(), { exactUpTo }))?.total;
    expect(await count(49)).to.equal('48');
    await pool().query('ANALYZE messages');
    // ANALYZE read every row of this small table: the estimate is the count, though only 10 were counted.
    expect(await count(10)).to.equal('48');
    await pool().query(
      "INSERT INTO messages (recipient, content) SELECT '+905551111111', 'x' FROM generate_series(1, 20)",
    );
    expect(await count(100), 'below the bound every row is counted').to.equal('68');
  });

  it('gives each row of a batch its own created_at, so claim order is the request order even within a microsecond', async () => {
    await seed(1_000);
    const { rows } = await pool().query<{ content: string }>('SELECT content FROM messages ORDER BY created_at, id');
    expect(rows.map((row) => row.content)).to.deep.equal(Array.from({ length: 1_000 }, (_, i) => `m${i}`));
    // Not left to the clock: on a fast machine consecutive rows share a microsecond (a bare table
    // here gets about 450 distinct clock_timestamp() values in 1,000 rows), so each is exactly 1 µs on.
    const steps = await pool().query<{ step: string; n: number }>(
      `SELECT step::text, count(*)::integer AS n
       FROM (SELECT created_at - lag(created_at) OVER (ORDER BY created_at, id) AS step FROM messages) AS s
       WHERE step IS NOT NULL GROUP BY step`,
    );
    expect(steps.rows).to.deep.equal([{ step: '00:00:00.000001', n: 999 }]);
    const claimed = await claim('order', 10);
    expect(claimed.map((row) => row.content)).to.deep.equal(Array.from({ length: 10 }, (_, i) => `m${i}`));
  });

  it('refuses what the schema forbids', async () => {
    for (const [recipient, content, constraint] of [
      ['905551111111', 'x', 'messages_recipient_e164'],
      ['+905551111111', '', 'messages_content_not_empty'],
    ] as const) {
      const error = await insertMessage(pool(), { recipient, content, sendAt: null, traceParent: null }).catch(
        (failure) => failure,
      );
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

  describe('due and available (scheduled -> available promotion)', () => {
    /** The database clock, `ms` from now. */
    const dbTime = async (ms = 0): Promise<Date> =>
      (await pool().query('SELECT clock_timestamp() + make_interval(secs => $1::float8 / 1000) AS t', [ms])).rows[0].t;
    const available = async (id: string): Promise<boolean> =>
      (await pool().query('SELECT available FROM messages WHERE id = $1', [id])).rows[0].available;
    /**
     * Claims every 50 ms until `due` has passed on the database clock. A claim
     * that ended before `due` must get nothing; the first claim that started at
     * or after it must get `expected`. Returns what that claim got.
     */
    const claimAcross = async (due: Date, expected: string[]) => {
      for (;;) {
        const before = await dbTime();
        const claimed = await claim('pod-a', 10);
        const after = await dbTime();
        if (after < due) expect(claimed, `claimed before ${due.toISOString()}`).to.deep.equal([]);
        // A claim that started at or after `due` sees it due.
        if (claimed.length > 0 || before >= due) {
          expect(claimed.map((row) => row.id).sort()).to.deep.equal([...expected].sort());
          return claimed;
        }
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    };

    it('never claims a scheduled message before its sendAt, and claims it once due', async () => {
      const at = await dbTime(1_000);
      const scheduled = await insertMessage(pool(), {
        recipient: '+905551111111',
        content: 'later',
        sendAt: at,
        traceParent: null,
      });
      expect(await available(scheduled!.id)).to.equal(false);
      const [claimed] = await claimAcross(at, [scheduled!.id]);
      expect(claimed!.attempts).to.equal(1);
      expect(await available(scheduled!.id), 'sending is never available').to.equal(false);
    });

    it('holds a retry in backoff until its next_attempt_at, then claims it again', async () => {
      const row = await seedClaimedAndRecorded('pending', 'HTTP 503', 1_000);
      expect(await available(row!.id)).to.equal(false);
      const { next } = (await pool().query('SELECT next_attempt_at AS next FROM messages WHERE id = $1', [row!.id]))
        .rows[0];
      const [again] = await claimAcross(next, [row!.id]);
      expect(again!.attempts).to.equal(2);
    });

    it('claims in created_at order among due messages, a due scheduled message before newer ones', async () => {
      const notYet = await insertMessage(pool(), {
        recipient: '+905551111111',
        content: 'in an hour',
        sendAt: await dbTime(3_600_000),
        traceParent: null,
      });
      const at = await dbTime(300);
      const scheduled = await insertMessage(pool(), {
        recipient: '+905551111111',
        content: 'soon',
        sendAt: at,
        traceParent: null,
      });
      while ((await dbTime()) < at) await new Promise((resolve) => setTimeout(resolve, 50));
      const fresh = await seed(3);
      expect(await available(scheduled!.id), 'not promoted until a claim').to.equal(false);
      const first = await claim('pod-a', 2);
      expect(first.map((row) => row.content).sort()).to.deep.equal(['m0', 'soon']);
      const rest = await claim('pod-a', 10);
      expect(rest.map((row) => row.id).sort()).to.deep.equal([fresh[1]!.id, fresh[2]!.id].sort());
      expect((await getMessage(pool(), { id: notYet!.id }))?.status).to.equal('pending');
    });

    it(`promotes at most ${promotionBatch} per claim, earliest due first: a larger burst catches up claim by claim`, async () => {
      const burst = promotionBatch + 500;
      // A campaign whose send time has just come: due, not yet available, oldest due first.
      await pool().query(
        `INSERT INTO messages (recipient, content, next_attempt_at, available, created_at)
         SELECT '+905551111111', 'burst ' || i, now() - interval '1 hour' + i * interval '1 millisecond', false,
                now() - interval '2 hours' + i * interval '1 millisecond'
         FROM generate_series(1, $1::integer) AS i`,
        [burst],
      );
      const availableCount = async () =>
        Number(
          (await pool().query("SELECT count(*) AS n FROM messages WHERE status = 'pending' AND available")).rows[0].n,
        );
      expect((await claim('pod-a', 1)).map((row) => row.content)).to.deep.equal(['burst 1']);
      expect(await availableCount()).to.equal(promotionBatch - 1);
      expect((await claim('pod-a', 1)).map((row) => row.content)).to.deep.equal(['burst 2']);
      expect(await availableCount()).to.equal(burst - 2);
      expect((await countPendingMessages(pool(), { exactUpTo: 10_000 }))?.total).to.equal(String(burst - 2));
    });

    it('cancel takes a message out of the claim; retry puts it back, due now or at its sendAt', async () => {
      const [now] = await seed(1);
      const later = await insertMessage(pool(), {
        recipient: '+905551111111',
        content: 'later',
        sendAt: await dbTime(3_600_000),
        traceParent: null,
      });
      for (const id of [now!.id, later!.id]) {
        expect((await cancelMessage(pool(), { id }))?.status).to.equal('cancelled');
        expect(await available(id)).to.equal(false);
      }
      expect(await claim('pod-a', 10)).to.deep.equal([]);
      for (const id of [now!.id, later!.id]) expect((await retryMessage(pool(), { id }))?.status).to.equal('pending');
      expect(await available(now!.id)).to.equal(true);
      expect(await available(later!.id)).to.equal(false);
      expect((await claim('pod-a', 10)).map((row) => row.id)).to.deep.equal([now!.id]);
    });

    it('hands untried messages back available, in their place in the claim order', async () => {
      const rows = await seed(3);
      const claimed = await claim('pod-a', 2);
      expect(
        await recordDeliveryOutcomes(
          pool(),
          withoutAttempts({
            owner: 'pod-a',
            ids: claimed.map((row) => row.id),
            statuses: ['untried', 'untried'],
            externalMessageIds: ['', ''],
            errors: ['', ''],
            retryDelaysMs: [0, 0],
          }),
        ),
      ).to.have.length(2);
      expect(await available(rows[0]!.id)).to.equal(true);
      const again = await claim('pod-b', 1);
      expect(again.map((row) => [row.id, row.attempts])).to.deep.equal([[rows[0]!.id, 1]]);
    });

    it('takes every message out of available when it leaves pending', async () => {
      const rows = await seed(3);
      const [sent, retried, failed] = await claim('pod-a', 3);
      expect(await available(sent!.id), 'sending').to.equal(false);
      await recordDeliveryOutcomes(
        pool(),
        withoutAttempts({
          owner: 'pod-a',
          ids: [sent!.id, retried!.id, failed!.id],
          statuses: ['sent', 'pending', 'failed'],
          externalMessageIds: ['ext-1', '', ''],
          errors: ['', 'HTTP 503', 'HTTP 400'],
          retryDelaysMs: [0, 0, 0],
        }),
      );
      for (const row of rows) expect(await available(row.id), row.content).to.equal(false);
      // A retry with no delay left is due at once: the next claim promotes and takes it.
      expect((await claim('pod-a', 10)).map((row) => row.id)).to.deep.equal([retried!.id]);
    });

    it('a statement that makes a message pending without naming available only delays it', async () => {
      const row = await seedClaimedAndRecorded('failed', 'HTTP 400', 0);
      // A hand-written "back to pending, in an hour" that does not know the column:
      await pool().query(
        "UPDATE messages SET status = 'pending', next_attempt_at = now() + interval '1 hour' WHERE id = $1",
        [row!.id],
      );
      expect(await claim('pod-a', 10)).to.deep.equal([]);
      // ... and the same, due now: the next claim promotes it.
      await pool().query('UPDATE messages SET next_attempt_at = now() WHERE id = $1', [row!.id]);
      expect((await claim('pod-a', 10)).map((claimed) => claimed.id)).to.deep.equal([row!.id]);
    });
  });

  it('records sent, retry and failed outcomes of a chunk in one statement', async () => {
    await seed(3);
    // The claim returns its rows oldest first.
    const [a, b, c] = await claim('pod-a', 3);
    const updated = await recordDeliveryOutcomes(
      pool(),
      withoutAttempts({
        owner: 'pod-a',
        ids: [a!.id, b!.id, c!.id],
        statuses: ['sent', 'pending', 'failed'],
        externalMessageIds: ['ext-1', '', ''],
        errors: ['', 'HTTP 503', 'HTTP 400: bad number'],
        retryDelaysMs: [0, 60_000, 0],
      }),
    );
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
    const stale = await recordDeliveryOutcomes(
      pool(),
      withoutAttempts({
        owner: 'pod-a',
        ids: [first!.id, second!.id],
        statuses: ['pending', 'sent'],
        externalMessageIds: ['', 'ext-late'],
        errors: ['timeout', ''],
        retryDelaysMs: [1_000, 0],
      }),
    );
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
