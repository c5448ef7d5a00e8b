import { expect } from 'chai';
import { createPool, type Pool } from '../../src/db/pool.ts';
import { preparedStatementNames } from '../../src/db/prepared-statements.ts';
import { insertMessages, listMessages } from '../../src/db/sqlc/messages_sql.ts';
import { claimDueMessages } from '../../src/delivery/claim.ts';
import { writeChunkOutcomes } from '../../src/delivery/settle.ts';
import { silentLogger } from '../../src/observability/logger.ts';
import { useTestDatabase } from '../support/postgres.ts';

/**
 * The hot statements run as named prepared statements on a real session
 * (parsed and planned once per connection), never through a transaction
 * pooler, and a migration that changes what one returns costs one failed
 * call per connection, not every call after it.
 */
describe('prepared statements (db/prepared-statements.ts)', function () {
  this.timeout(30_000);
  const db = useTestDatabase();
  const pools: Pool[] = [];
  /** One connection, so every call of a test runs on the session it then inspects. */
  const onePool = (transactionPooler = false) => {
    const pool = createPool({ connectionString: db().url, max: 1, transactionPooler });
    pools.push(pool);
    return pool;
  };
  const prepared = async (pool: Pool) =>
    (await pool.query('SELECT name FROM pg_prepared_statements ORDER BY name')).rows.map((row) => row.name as string);
  const batch = (n: number) => ({
    traceParent: null,
    recipients: Array.from({ length: n }, () => '+905551111111'),
    contents: Array.from({ length: n }, (_, i) => `prepared ${i}`),
    sendAts: Array.from({ length: n }, () => ''),
  });
  const logger = silentLogger();
  const claim = (pool: Pool, maxMessages: number) =>
    claimDueMessages(pool, { leaseSeconds: 60, owner: 'test/run', executionId: null, maxMessages });

  afterEach(async () => {
    await Promise.all(pools.splice(0).map((pool) => pool.end()));
    await db().pool.query('TRUNCATE messages');
  });

  it('intake, claim and outcome write are prepared once per connection; a listing is not', async () => {
    const pool = onePool();
    for (let round = 0; round < 3; round += 1) {
      await insertMessages(pool, batch(5));
      const claimed = await claim(pool, 5);
      expect(claimed).to.have.length(5);
      const sentAt = await writeChunkOutcomes(
        pool,
        {
          owner: 'test/run',
          items: claimed.map((message) => ({
            id: message.id,
            decision: { status: 'sent', externalMessageId: `ext-${message.id}` },
          })),
        },
        { logger },
      );
      expect(sentAt.size).to.equal(5);
    }
    await listMessages(pool, { status: 'sent', recipient: null, afterCreatedAt: null, afterId: null, maxRows: 10 });
    expect(await prepared(pool)).to.deep.equal([
      'jm_ClaimMessages_1',
      'jm_InsertMessages_1',
      'jm_PromoteDueMessages_1',
      'jm_RecordDeliveryOutcomes_1',
    ]);
    expect((await db().pool.query("SELECT count(*)::int AS n FROM messages WHERE status = 'sent'")).rows[0].n).to.equal(
      15,
    );
    expect([...preparedStatementNames]).to.not.include('ListMessages');
  });

  it('through a transaction pooler every statement stays unnamed', async () => {
    const pool = onePool(true);
    await insertMessages(pool, batch(3));
    const claimed = await claim(pool, 3);
    expect(claimed).to.have.length(3);
    expect(await prepared(pool)).to.deep.equal([]);
  });

  it('a changed result type fails one call on the connection, then the statement is prepared anew', async () => {
    const pool = onePool();
    const client = await pool.connect();
    const refusal = (error: { code?: string; message?: string }) => error;
    try {
      await insertMessages(client, batch(1));
      // What a migration could do under a running pod: InsertMessages returns `attempts`, now of another type.
      await db().pool.query('ALTER TABLE messages ALTER COLUMN attempts TYPE bigint');
      const refused = await insertMessages(client, batch(1)).then(() => undefined, refusal);
      expect(refused?.code).to.equal('0A000');
      expect(refused?.message).to.match(/cached plan must not change result type/);
      // The same connection, kept (a caller that releases it as healthy): the next call prepares a new name.
      expect(await insertMessages(client, batch(1))).to.have.length(1);
      const names = await client.query('SELECT name FROM pg_prepared_statements ORDER BY name');
      expect(names.rows.map((row) => row.name)).to.deep.equal(['jm_InsertMessages_1', 'jm_InsertMessages_2']);
    } finally {
      client.release();
    }
    // Through pool.query (node-postgres's callback form) too: one refusal, then it works.
    await db().pool.query('ALTER TABLE messages ALTER COLUMN attempts TYPE integer');
    expect((await insertMessages(pool, batch(1)).then(() => undefined, refusal))?.code).to.equal('0A000');
    expect(await insertMessages(pool, batch(1))).to.have.length(1);
    expect((await db().pool.query('SELECT count(*)::int AS n FROM messages')).rows[0].n).to.equal(3);
  });
});
