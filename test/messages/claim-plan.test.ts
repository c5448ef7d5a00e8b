import { expect } from 'chai';
import pg from 'pg';
import { claimMessagesQuery } from '../../src/db/sqlc/messages_sql.ts';
import { useTestDatabase } from '../support/postgres.ts';

interface PlanNode {
  'Node Type': string;
  'Index Name'?: string;
  Plans?: PlanNode[];
}

function nodesOf(plan: PlanNode): PlanNode[] {
  return [plan, ...(plan.Plans ?? []).flatMap(nodesOf)];
}

/**
 * The claim stays one index scan with send times in play: the plan of the
 * real ClaimMessages statement at 300,000 pending rows, as PostgreSQL chooses it.
 */
describe('the claim plan with sendAt', function () {
  this.timeout(120_000);
  const db = useTestDatabase();
  // The 300,000-row set-up runs on its own connection: the service's pool bounds every statement at
  // 10 s (statement_timeout), which a loaded machine can need for it; the plans are read on the pool.
  let setup: pg.Client;
  before(async () => {
    setup = new pg.Client({ connectionString: db().url });
    setup.on('error', () => {}); // the database is dropped when the file ends
    await setup.connect();
  });
  after(() => setup?.end().catch(() => {}));
  const explain = async () => {
    const result = await db().pool.query({
      text: `EXPLAIN (FORMAT JSON) ${claimMessagesQuery}`,
      values: [60, 'explain', null, 50],
    });
    return nodesOf(result.rows[0]['QUERY PLAN'][0].Plan as PlanNode);
  };

  it('walks messages_pending_claim_idx in created_at order, no sort, when the backlog is due', async () => {
    // Mostly due now; one in ten scheduled for later, as a mixed real backlog would be.
    await setup.query(`
      INSERT INTO messages (recipient, content, send_at, next_attempt_at, created_at)
      SELECT '+905551111111', 'm' || i,
             CASE WHEN i % 10 = 0 THEN now() + interval '1 day' END,
             CASE WHEN i % 10 = 0 THEN now() + interval '1 day' ELSE now() END,
             now() - interval '1 hour' + i * interval '1 millisecond'
      FROM generate_series(1, 300000) AS i`);
    await setup.query('ANALYZE messages');
    const nodes = await explain();
    // The pkey scan is the UPDATE finding each claimed row by id; the choice is which rows to claim.
    const scans = nodes.filter(
      (node) =>
        node['Node Type'] !== 'Subquery Scan' &&
        node['Node Type'].includes('Scan') &&
        node['Index Name'] !== 'messages_pkey',
    );
    expect(scans.map((node) => [node['Node Type'], node['Index Name']])).to.deep.equal([
      ['Index Scan', 'messages_pending_claim_idx'],
    ]);
    expect(nodes.map((node) => node['Node Type'])).to.not.include('Sort');
  });

  it('walks the due index instead when most of the backlog is scheduled for later', async () => {
    await setup.query(
      "UPDATE messages SET send_at = now() + interval '1 day', next_attempt_at = now() + interval '1 day' WHERE content <> 'm1'",
    );
    await setup.query('VACUUM ANALYZE messages');
    const nodes = await explain();
    const indexes = nodes.map((node) => node['Index Name']).filter((name) => name && name !== 'messages_pkey');
    expect(indexes).to.deep.equal(['messages_pending_due_idx']);
    const claimed = await db().pool.query({ text: claimMessagesQuery, values: [60, 'explain', null, 50] });
    expect(claimed.rows.map((row) => row.content)).to.deep.equal(['m1']);
  });
});
