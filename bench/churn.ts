// `npm run bench:churn`: delivery under a long transaction (the queue-bloat test).
//
// A throwaway database gets CHURN_MESSAGES (200000) due messages; one service
// process delivers them to the webhook sink (4 send-messages jobs, 1 s, batch
// 10,000, WEBHOOK_CONCURRENCY 32) while another session holds a REPEATABLE READ
// transaction open for CHURN_HOLD_SECONDS (180; 0: none, the baseline). Every
// 5 s it records messages delivered, dead tuples in `messages` and what a
// claim costs then (promote + claim 40 under EXPLAIN ANALYZE, in a transaction
// rolled back: time and pages read). It keeps sampling CHURN_AFTER_SECONDS (60)
// after the transaction ends, and prints a table by phase (before, during,
// after). CHURN_DEFAULT_AUTOVACUUM=1 resets the table's autovacuum settings to
// the server's defaults first, for comparison with the migration's.
import { cpus, totalmem } from 'node:os';
import pg from 'pg';
import { claimMessagesQuery, promoteDueMessagesQuery } from '../src/db/sqlc/messages_sql.ts';
import { promotionBatch } from '../src/delivery/claim.ts';
import { startSink } from '../src/sink/server.ts';
import { createTestDatabase, dropTestDatabase, stopTestServer } from '../test/support/postgres.ts';
import { call, startPod } from './support.ts';

const messages = Number(process.env.CHURN_MESSAGES ?? 200_000);
const holdSeconds = Number(process.env.CHURN_HOLD_SECONDS ?? 180);
const afterSeconds = Number(process.env.CHURN_AFTER_SECONDS ?? 60);
const defaultAutovacuum = process.env.CHURN_DEFAULT_AUTOVACUUM === '1';
if (!process.env.TEST_DATABASE_URL && process.env.BENCH_DATABASE_URL) {
  process.env.TEST_DATABASE_URL = process.env.BENCH_DATABASE_URL;
}

interface Sample {
  second: number;
  phase: 'before' | 'during' | 'after';
  delivered: number;
  deadTuples: number;
  claimMs: number;
  claimPages: number;
  autovacuums: number;
}

const database = await createTestDatabase();
const sink = await startSink();
const setup = new pg.Client({ connectionString: database.url, options: '-c statement_timeout=0' });
const holder = new pg.Client({ connectionString: database.url, options: '-c statement_timeout=0' });
setup.on('error', () => {});
holder.on('error', () => {});
let pod: Awaited<ReturnType<typeof startPod>> | undefined;
try {
  await setup.connect();
  await holder.connect();
  if (defaultAutovacuum) {
    await setup.query(`ALTER TABLE messages RESET (autovacuum_vacuum_scale_factor, autovacuum_vacuum_threshold,
      autovacuum_vacuum_insert_scale_factor, autovacuum_vacuum_insert_threshold, autovacuum_analyze_scale_factor,
      autovacuum_analyze_threshold, autovacuum_vacuum_cost_limit)`);
  }
  const options = await setup.query("SELECT reloptions FROM pg_class WHERE oid = 'messages'::regclass");
  pod = await startPod('churn', {
    DATABASE_URL: database.url,
    WEBHOOK_URL: sink.url,
    WEBHOOK_CONCURRENCY: '32',
    LOG_LEVEL: 'warn',
  });
  await call(pod.url, 'PUT', '/jobs/stop');
  await setup.query(
    `INSERT INTO messages (recipient, content, available, created_at)
     SELECT '+905551111111', 'churn ' || g, true, now() - interval '1 hour' + g * interval '1 millisecond'
     FROM generate_series(1, $1::integer) AS g`,
    [messages],
  );
  await setup.query('VACUUM ANALYZE messages');

  const samples: Sample[] = [];
  const started = performance.now();
  let phase: Sample['phase'] = 'before';
  const sample = async () => {
    const claim = await claimCost(setup);
    const stats = await setup.query<{ dead: string; autovacuums: string }>(
      "SELECT n_dead_tup AS dead, autovacuum_count AS autovacuums FROM pg_stat_user_tables WHERE relname = 'messages'",
    );
    const row = {
      second: Math.round((performance.now() - started) / 1000),
      phase,
      delivered: sink.received().unique,
      deadTuples: Number(stats.rows[0]?.dead ?? 0),
      claimMs: claim.ms,
      claimPages: claim.pages,
      autovacuums: Number(stats.rows[0]?.autovacuums ?? 0),
    };
    samples.push(row);
    console.log(JSON.stringify(row));
  };
  await sample();

  phase = 'during';
  if (holdSeconds > 0) {
    await holder.query('BEGIN ISOLATION LEVEL REPEATABLE READ');
    await holder.query('SELECT count(*) FROM jobs'); // takes the snapshot: from now on no row version is removable
  }
  for (let index = 0; index < 4; index += 1) {
    await call(pod.url, 'POST', '/jobs', {
      name: `churn-sender-${index}`,
      handler: 'send-messages',
      intervalSeconds: 1,
      batchSize: 10_000,
      active: true,
    });
  }
  const deliveryStarted = performance.now();
  let deliverySeconds: number | undefined;
  const holdUntil = performance.now() + holdSeconds * 1000;
  while (performance.now() < holdUntil || (holdSeconds === 0 && sink.received().unique < messages)) {
    await new Promise((resolve) => setTimeout(resolve, 5_000));
    await sample();
    if (deliverySeconds === undefined && sink.received().unique >= messages)
      deliverySeconds = (performance.now() - deliveryStarted) / 1000;
  }
  if (holdSeconds > 0) await holder.query('COMMIT');
  phase = 'after';
  const afterUntil = performance.now() + afterSeconds * 1000;
  while (performance.now() < afterUntil) {
    await new Promise((resolve) => setTimeout(resolve, 5_000));
    await sample();
    if (deliverySeconds === undefined && sink.received().unique >= messages)
      deliverySeconds = (performance.now() - deliveryStarted) / 1000;
  }

  const report = sink.received();
  console.log(
    `\nMachine: ${cpus().length} × ${cpus()[0]?.model}, ${Math.round(totalmem() / 2 ** 30)} GiB, Node ${process.version}`,
  );
  console.log(
    `messages ${messages}, held ${holdSeconds} s, autovacuum ${defaultAutovacuum ? 'server defaults' : JSON.stringify(options.rows[0]?.reloptions)}`,
  );
  console.log(
    `delivered ${report.unique} (duplicates ${report.duplicates.length}) in ${deliverySeconds?.toFixed(0) ?? 'more than the run'} s = ${deliverySeconds ? Math.round(messages / deliverySeconds) : '?'} messages/s`,
  );
  console.log(
    '\n| phase | claim median | claim max | pages per claim (max) | dead tuples (max) | dead tuples at the end |',
  );
  console.log('|---|---|---|---|---|---|');
  for (const name of ['before', 'during', 'after'] as const) {
    const rows = samples.filter((row) => row.phase === name);
    if (rows.length === 0) continue;
    const claims = rows.map((row) => row.claimMs).sort((a, b) => a - b);
    console.log(
      `| ${name} | ${claims[Math.floor(claims.length / 2)]!.toFixed(1)} ms | ${claims.at(-1)!.toFixed(1)} ms | ${Math.max(...rows.map((row) => row.claimPages))} | ${Math.max(...rows.map((row) => row.deadTuples))} | ${rows.at(-1)!.deadTuples} |`,
    );
  }
} finally {
  await pod?.stop();
  await holder.end().catch(() => {});
  await setup.end().catch(() => {});
  await sink.close();
  await dropTestDatabase(database);
  await stopTestServer();
}

/** Promote + claim 40 under EXPLAIN ANALYZE in a transaction rolled back: its time (ms) and pages read. */
async function claimCost(client: pg.Client): Promise<{ ms: number; pages: number }> {
  await client.query('BEGIN');
  try {
    let ms = 0;
    let pages = 0;
    for (const [text, values] of [
      [promoteDueMessagesQuery, [promotionBatch]],
      [claimMessagesQuery, [60, 'churn-probe', null, 40]],
    ] as const) {
      const result = await client.query({
        text: `EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) ${text}`,
        values: [...values],
      });
      const plan = result.rows[0]['QUERY PLAN'][0];
      ms += plan['Execution Time'] + plan['Planning Time'];
      pages += (plan.Plan['Shared Hit Blocks'] ?? 0) + (plan.Plan['Shared Read Blocks'] ?? 0);
    }
    return { ms, pages };
  } finally {
    await client.query('ROLLBACK');
  }
}
