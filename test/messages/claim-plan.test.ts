import { expect } from 'chai';
import pg from 'pg';
import { deleteExpiredMessagesQuery } from '../../src/db/sqlc/maintenance_sql.ts';
import {
  claimMessagesQuery,
  countPendingMessagesQuery,
  listMessagesQuery,
  listSendingMessagesQuery,
  planClaimInIndexOrderQuery,
  promoteDueMessagesQuery,
  recordDeliveryOutcomesQuery,
  retryFailedMessagesQuery,
} from '../../src/db/sqlc/messages_sql.ts';
import { claimDueMessages, promotionBatch } from '../../src/delivery/claim.ts';
import { RETENTION_BATCH_ROWS } from '../../src/maintenance/maintenance.ts';
import { PENDING_EXACT_UP_TO, RETRY_FAILED_BATCH_ROWS } from '../../src/messages/message-service.ts';
import { useTestDatabase } from '../support/postgres.ts';

interface PlanNode {
  'Node Type': string;
  'Index Name'?: string;
  'Relation Name'?: string;
  'Actual Rows'?: number;
  'Rows Removed by Filter'?: number;
  'Shared Hit Blocks'?: number;
  'Shared Read Blocks'?: number;
  Plans?: PlanNode[];
}

function nodesOf(plan: PlanNode): PlanNode[] {
  return [plan, ...(plan.Plans ?? []).flatMap(nodesOf)];
}

/**
 * The scans that choose rows. Not counted: the CTE Scan that re-reads the ids
 * the statement chose once (its materialized CTE), and the pkey scan, an
 * UPDATE finding each chosen row by id.
 */
function choosingScans(nodes: PlanNode[]): PlanNode[] {
  return nodes.filter(
    (node) =>
      !['Subquery Scan', 'CTE Scan'].includes(node['Node Type']) &&
      node['Node Type'].includes('Scan') &&
      node['Index Name'] !== 'messages_pkey',
  );
}

const notDue = 200_000;
const due = 5;

/**
 * Issue 12: the claim stays one index scan at a large pending backlog, even
 * when nearly all of it is not due. The plans of the real statements, as
 * PostgreSQL chooses and runs them (EXPLAIN ANALYZE in a transaction that is
 * rolled back), with 200,000 pending messages scheduled a day ahead that are
 * all older than the 5 due ones: the pathological case of a campaign for
 * tomorrow plus a few fresh transactional messages.
 */
describe('the claim plan', function () {
  this.timeout(180_000);
  const db = useTestDatabase();

  /** EXPLAIN (ANALYZE, BUFFERS) of each statement in one transaction, rolled back: the plans as run, nothing changed. */
  const analyze = async (...statements: Array<{ text: string; values: unknown[] }>) => {
    const client = await db().pool.connect();
    try {
      await client.query('BEGIN');
      const plans: PlanNode[][] = [];
      for (const { text, values } of statements) {
        const result = await client.query({ text: `EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) ${text}`, values });
        plans.push(nodesOf(result.rows[0]['QUERY PLAN'][0].Plan as PlanNode));
      }
      return plans;
    } finally {
      await client.query('ROLLBACK');
      client.release();
    }
  };
  const promote = { text: promoteDueMessagesQuery, values: [promotionBatch] };
  const claim = (max: number) => ({ text: claimMessagesQuery, values: [60, 'explain', null, max] });
  const blocks = (node: PlanNode) => (node['Shared Hit Blocks'] ?? 0) + (node['Shared Read Blocks'] ?? 0);

  before(async () => {
    // The 200,000-row set-up runs on its own connection: the service's pool bounds every statement
    // at 10 s (statement_timeout), which a loaded machine can need for it; the plans are read on the pool.
    const setup = new pg.Client({ connectionString: db().url });
    await setup.connect();
    try {
      await fill(setup);
    } finally {
      await setup.end();
    }
  });
  const fill = async (setup: pg.Client) => {
    // Raw INSERTs name `available` the way intake does: scheduled ahead, not available.
    await setup.query(
      `INSERT INTO messages (recipient, content, send_at, next_attempt_at, available, created_at)
       SELECT '+905551111111', 'later ' || i, now() + interval '1 day', now() + interval '1 day', false,
              now() - interval '2 hours' + i * interval '1 millisecond'
       FROM generate_series(1, $1::integer) AS i`,
      [notDue],
    );
    await setup.query(
      `INSERT INTO messages (recipient, content, available)
       SELECT '+905551111111', 'now ' || i, true FROM generate_series(1, $1::integer) AS i`,
      [due],
    );
    await setup.query('VACUUM ANALYZE messages');
  };

  it('promotes nothing when nothing is due, reading next to nothing', async () => {
    const [promotion] = await analyze(promote);
    const scans = choosingScans(promotion!);
    expect(scans.map((node) => [node['Node Type'], node['Index Name']])).to.deep.equal([
      ['Index Scan', 'messages_scheduled_due_idx'],
    ]);
    expect(scans[0]!['Actual Rows']).to.equal(0);
    expect(blocks(scans[0]!), 'index pages read').to.be.at.most(5);
  });

  it('claims by one walk of messages_available_claim_idx that reads only the rows it claims', async () => {
    const [, claimPlan] = await analyze(promote, claim(50));
    const scans = choosingScans(claimPlan!);
    expect(scans.map((node) => [node['Node Type'], node['Index Name']])).to.deep.equal([
      ['Index Scan', 'messages_available_claim_idx'],
    ]);
    expect(claimPlan!.map((node) => node['Node Type'])).to.not.include('Sort');
    const scan = scans[0]!;
    expect(scan['Actual Rows']).to.equal(due);
    expect(scan['Rows Removed by Filter'] ?? 0).to.equal(0);
    // 200,000 older rows skipped one by one would be thousands of pages.
    expect(blocks(scan), 'pages read by the claim scan').to.be.below(20);
  });

  it('claims the due ones, oldest first, and none of the scheduled', async () => {
    const claimed = await claimDueMessages(db().pool, {
      leaseSeconds: 60,
      owner: 'plan',
      executionId: null,
      maxMessages: 50,
    });
    expect(claimed.map((row) => row.content)).to.deep.equal(Array.from({ length: due }, (_, i) => `now ${i + 1}`));
    await db().pool.query(
      "UPDATE messages SET status = 'pending', available = true, lease_until = NULL, locked_by = NULL WHERE status = 'sending'",
    );
  });

  it('keeps the other readers of pending messages on indexes (no dropped index is missed)', async () => {
    const [count, listing] = await analyze(
      { text: countPendingMessagesQuery, values: [PENDING_EXACT_UP_TO] },
      { text: listMessagesQuery, values: ['pending', null, null, null, 20] },
    );
    // The metrics gauge: one scan of messages that stops at exact_up_to rows (the rest is catalog reads).
    const countScans = choosingScans(count!).filter((node) => node['Relation Name'] === 'messages');
    expect(countScans).to.have.length(1);
    expect(countScans[0]!['Index Name'] ?? countScans[0]!['Node Type']).to.be.oneOf([
      'Seq Scan',
      'messages_listing_status_idx',
    ]);
    expect(countScans[0]!['Actual Rows']).to.equal(PENDING_EXACT_UP_TO);
    // GET /messages?status=pending: newest first on an index, no sort, a page's worth of rows.
    expect(listing!.map((node) => node['Node Type'])).to.not.include.members(['Seq Scan', 'Sort']);
    const [listScan, ...others] = choosingScans(listing!);
    expect(others).to.deep.equal([]);
    expect(listScan!['Index Name']).to.be.oneOf(['messages_listing_status_idx', 'messages_created_idx']);
    expect(listScan!['Actual Rows']).to.equal(20);
  });
});

/**
 * Issue 20: what each row version pays. A claimed message (sending) has no
 * entry in the listing-by-status index, and a settled one none in an index
 * for retention alone; the listing of sending messages and retention read
 * partial indexes instead.
 */
describe('the indexes a claim and a settle write', function () {
  this.timeout(60_000);
  const db = useTestDatabase();

  it('lists sending messages newest first from the lease index, never walking the pending backlog', async () => {
    // 3,000 in flight, older than a backlog of 100,000 pending: the claim takes the oldest first.
    const setup = new pg.Client({ connectionString: db().url });
    await setup.connect();
    try {
      await setup.query(
        `INSERT INTO messages (recipient, content, status, lease_until, locked_by, created_at)
         SELECT '+905551111111', 'in flight ' || i, 'sending', now() + interval '1 minute', 'pod-a',
                now() - interval '2 hours' + i * interval '1 millisecond'
         FROM generate_series(1, 3000) AS i`,
      );
      await setup.query(
        `INSERT INTO messages (recipient, content, available, created_at)
         SELECT '+905551111111', 'backlog ' || i, true, now() - interval '1 hour' + i * interval '1 millisecond'
         FROM generate_series(1, 100000) AS i`,
      );
      await setup.query('VACUUM ANALYZE messages');
    } finally {
      await setup.end();
    }
    const values = [null, null, null, 5];
    const rows = await db().pool.query({ text: listSendingMessagesQuery, values });
    expect(rows.rows.map((row) => row.content)).to.deep.equal([
      'in flight 3000',
      'in flight 2999',
      'in flight 2998',
      'in flight 2997',
      'in flight 2996',
    ]);
    const plan = await db().pool.query({ text: `EXPLAIN (ANALYZE, FORMAT JSON) ${listSendingMessagesQuery}`, values });
    const nodes = nodesOf(plan.rows[0]['QUERY PLAN'][0].Plan as PlanNode);
    const indexes = nodes.map((node) => node['Index Name']).filter(Boolean);
    expect(indexes).to.deep.equal(['messages_sending_lease_idx']);
    const read = nodes
      .filter((node) => node['Relation Name'] === 'messages')
      .reduce((sum, node) => sum + (node['Actual Rows'] ?? 0) + (node['Rows Removed by Filter'] ?? 0), 0);
    expect(read, 'rows of messages read').to.equal(3000);
  });

  it('has no index that takes an entry for every claim or every settle alone', async () => {
    const { rows } = await db().pool.query(
      `SELECT indexrelid::regclass::text AS name FROM pg_index WHERE indrelid = 'messages'::regclass ORDER BY 1`,
    );
    const names = rows.map((row) => row.name);
    expect(names).to.include.members(['messages_listing_status_idx', 'messages_cancelled_at_idx']);
    expect(names).to.not.include.members(['messages_status_created_idx', 'messages_retention_idx']);
  });
});

/**
 * Issue 18: right after a bulk intake into a table never analysed, the claim
 * keeps walking its indexes in order. 100,000 due rows written as an
 * operator's INSERT … SELECT writes them (not naming `available`, so each is
 * promoted first), with autovacuum off on this database's table so no ANALYZE
 * can come in between. Without PlanClaimInIndexOrder, PostgreSQL 15 guesses a
 * few hundred due rows and promotes by a bitmap scan of all 100,000 plus a
 * sort; the statements here are the ones claimDueMessages runs, in its order.
 */
describe('the claim plan after a bulk intake, before any ANALYZE', function () {
  this.timeout(180_000);
  const db = useTestDatabase();
  const bulk = 100_000;

  before(async () => {
    const setup = new pg.Client({ connectionString: db().url });
    await setup.connect();
    try {
      await setup.query('ALTER TABLE messages SET (autovacuum_enabled = false)');
      await setup.query(
        `INSERT INTO messages (recipient, content)
         SELECT '+905551111111', 'bulk ' || i FROM generate_series(1, $1::integer) AS i`,
        [bulk],
      );
    } finally {
      await setup.end();
    }
  });

  it('promotes and claims by ordered index walks that stop at their limit, with no sort', async () => {
    const stats = await db().pool.query("SELECT reltuples FROM pg_class WHERE oid = 'messages'::regclass");
    expect(stats.rows[0].reltuples, 'messages never analysed').to.equal(-1);
    const client = await db().pool.connect();
    const plans: PlanNode[][] = [];
    try {
      await client.query('BEGIN');
      for (const { text, values } of [
        { text: planClaimInIndexOrderQuery, values: [] },
        { text: promoteDueMessagesQuery, values: [promotionBatch] },
        { text: claimMessagesQuery, values: [60, 'explain', null, 40] },
      ]) {
        const result = await client.query({ text: `EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) ${text}`, values });
        plans.push(nodesOf(result.rows[0]['QUERY PLAN'][0].Plan as PlanNode));
      }
    } finally {
      await client.query('ROLLBACK');
      client.release();
    }
    const [, promotion, claim] = plans;
    for (const [name, plan, index, rows] of [
      ['promotion', promotion!, 'messages_scheduled_due_idx', promotionBatch],
      ['claim', claim!, 'messages_available_claim_idx', 40],
    ] as const) {
      expect(
        plan.map((node) => node['Node Type']),
        name,
      ).to.not.include.members(['Sort', 'Bitmap Heap Scan']);
      const scans = choosingScans(plan);
      expect(
        scans.map((node) => [node['Node Type'], node['Index Name']]),
        name,
      ).to.deep.equal([['Index Scan', index]]);
      // It stopped at its limit: it did not read the other due rows.
      expect(scans[0]!['Actual Rows'], name).to.equal(rows);
    }
  });
});

/**
 * The statements that change rows they chose (claim, outcome write, promotion,
 * retry-failed, retention) find those rows by primary key at every table
 * size. Joined to the chosen ids as a table, PostgreSQL 15 with its default
 * costs (random_page_cost 4) hashes them and reads the whole table instead
 * once the table is small enough: at 20,000 rows, both statements of every
 * claimed chunk read all 20,000 (about 2 ms each here), which was a quarter of
 * the database's CPU per message in the side-by-side bench.
 */
describe('the statements that change chosen rows, on a small analysed table', function () {
  this.timeout(180_000);
  const db = useTestDatabase();
  const rows = 20_000;
  const chunk = 150;

  before(async () => {
    const setup = new pg.Client({ connectionString: db().url });
    await setup.connect();
    try {
      await setup.query(
        `INSERT INTO messages (recipient, content, available)
         SELECT '+905551111111', 'small ' || i, true FROM generate_series(1, $1::integer) AS i`,
        [rows],
      );
      await setup.query(
        `UPDATE messages SET status = 'failed', last_error = 'HTTP 400', updated_at = now() - interval '40 days'
         WHERE content LIKE 'small 1____'`,
      );
      await setup.query('VACUUM ANALYZE messages');
    } finally {
      await setup.end();
    }
  });

  /** The scans of `messages` in a plan, as [node type, index name or null]. */
  const messageScans = (plan: PlanNode[]) =>
    plan
      .filter((node) => node['Relation Name'] === 'messages' && node['Node Type'].includes('Scan'))
      .map((node) => [node['Node Type'], node['Index Name'] ?? null]);

  it('claims a chunk and writes its outcomes without reading the table', async () => {
    const client = await db().pool.connect();
    const explain = async (text: string, values: unknown[]) => {
      const result = await client.query({ text: `EXPLAIN (ANALYZE, FORMAT JSON) ${text}`, values });
      return nodesOf(result.rows[0]['QUERY PLAN'][0].Plan as PlanNode);
    };
    try {
      // As claimDueMessages runs them, committed; then the outcome write, a statement of its own.
      await client.query('BEGIN');
      await client.query(planClaimInIndexOrderQuery);
      const promotePlan = await explain(promoteDueMessagesQuery, [promotionBatch]);
      const claimPlan = await explain(claimMessagesQuery, [60, 'explain', null, chunk]);
      await client.query('COMMIT');
      const claimed = await client.query("SELECT id FROM messages WHERE status = 'sending' AND locked_by = 'explain'");
      expect(claimed.rows).to.have.length(chunk);
      const outcomes = JSON.stringify(
        claimed.rows.map(({ id }) => ({
          id,
          status: 'sent',
          external_message_id: `provider-${id}`,
          attempt_outcome: 'delivered',
          started_at: new Date().toISOString(),
          duration_ms: 3,
          http_status: 200,
        })),
      );
      const settlePlan = await explain(recordDeliveryOutcomesQuery, [outcomes, 'explain']);
      for (const [name, plan] of [
        ['promotion', promotePlan],
        ['claim', claimPlan],
        ['outcome write', settlePlan],
      ] as const) {
        expect(messageScans(plan), name).to.not.deep.include(['Seq Scan', null]);
      }
      expect(messageScans(claimPlan)).to.deep.include(['Index Scan', 'messages_pkey']);
      const sent = await client.query("SELECT count(*)::integer AS n FROM messages WHERE status = 'sent'");
      expect(sent.rows[0].n).to.equal(chunk);
    } finally {
      await client.query('ROLLBACK');
      client.release();
    }
  });

  it('retries failed messages and removes expired ones without reading the table', async () => {
    const client = await db().pool.connect();
    try {
      await client.query('BEGIN');
      const plans: PlanNode[][] = [];
      for (const { text, values } of [
        { text: retryFailedMessagesQuery, values: [null, null, RETRY_FAILED_BATCH_ROWS] },
        { text: deleteExpiredMessagesQuery, values: [30, RETENTION_BATCH_ROWS] },
      ]) {
        const result = await client.query({ text: `EXPLAIN (ANALYZE, FORMAT JSON) ${text}`, values });
        plans.push(nodesOf(result.rows[0]['QUERY PLAN'][0].Plan as PlanNode));
      }
      const [retry, retention] = plans;
      expect(messageScans(retry!), 'retry-failed').to.not.deep.include(['Seq Scan', null]);
      expect(messageScans(retention!), 'retention').to.not.deep.include(['Seq Scan', null]);
      // Retention read the expired failed messages on their own index (there is no index of every terminal
      // message, which took an entry at every settle) and removed them by primary key.
      expect(retention!.map((node) => node['Index Name']).filter(Boolean)).to.include.members([
        'messages_failed_at_idx',
        'messages_pkey',
      ]);
    } finally {
      await client.query('ROLLBACK');
      client.release();
    }
  });
});
