// `npm run bench`: end-to-end numbers anyone can reproduce on their machine.
//
// 0. compare   – this service, pg-boss, Graphile Worker and the HTTP-only ceiling side by side
//                (bench/compare.ts; results in bench/results/); `npm run bench -- --quick` runs only this, smaller;
//                `-- --service` runs only this service (1 pod, 3 runs): a quick before/after check;
//                `-- --capped` runs only the capped webhook (3 runs of 6,000 messages)
// 1. intake    – POST /messages (single, 16 concurrent clients) and POST /messages/batch (1,000 a request)
// 2. dispatch  – N service processes drain the backlog to the project's webhook sink; every
//                message must arrive exactly once (checked by Idempotency-Key)
// 3. scale     – the claim (promotion and claim, as dispatch runs it) and read queries with
//                1,000,000 messages in the table (one in ten scheduled a day ahead with sendAt),
//                the claim's plan, a backlog that is almost all scheduled, a burst of 100,000
//                scheduled messages all due at once, and retry-failed over 100,000 failed messages
//
// Database: BENCH_DATABASE_URL, else TEST_DATABASE_URL, else an embedded PostgreSQL.
// A fresh database is created and dropped. Sizes: BENCH_MESSAGES (20000), BENCH_PODS (2),
// BENCH_SCALE_ROWS (1000000), BENCH_SENDER_JOBS (4: send-messages jobs, 1 s, batch 10,000).
import { cpus, totalmem } from 'node:os';
import pg from 'pg';
import {
  claimMessagesQuery,
  countPendingMessages,
  listMessages,
  listSentMessages,
} from '../src/db/sqlc/messages_sql.ts';
import { claimDueMessages, promotionBatch } from '../src/delivery/claim.ts';
import { MessageService, PENDING_EXACT_UP_TO } from '../src/messages/message-service.ts';
import { startSink } from '../src/sink/server.ts';
import { createTestDatabase, dropTestDatabase, stopTestServer } from '../test/support/postgres.ts';
import { runComparison } from './compare.ts';
import { runGrowth } from './growth.ts';
import { call, ms, pct, startPod } from './support.ts';

// `npm run bench -- --growth`: the growth scenario alone (bench/growth.ts), 10,000 against 10,000,000 rows.
if (process.argv.includes('--growth')) {
  await runGrowth();
  process.exit(0);
}

const messagesTotal = Number(process.env.BENCH_MESSAGES ?? 20_000);
const podCount = Number(process.env.BENCH_PODS ?? 2);
const scaleRows = Number(process.env.BENCH_SCALE_ROWS ?? 1_000_000);
const senderJobs = Number(process.env.BENCH_SENDER_JOBS ?? 4);
if (!process.env.TEST_DATABASE_URL && process.env.BENCH_DATABASE_URL) {
  process.env.TEST_DATABASE_URL = process.env.BENCH_DATABASE_URL;
}

// 0. side by side (bench/compare.ts): its own throwaway cluster, so CPU and WAL are this bench's alone.
// `--quick` runs only this part, smaller (under 3 minutes).
const quick = process.argv.includes('--quick');
const profile = process.argv.includes('--profile');
const serviceOnly = process.argv.includes('--service');
const cappedOnly = process.argv.includes('--capped');
const comparison = await runComparison({ quick, profile, serviceOnly, cappedOnly });
console.log(JSON.stringify(comparison, null, 2));
if (quick || profile || serviceOnly || cappedOnly) process.exit(0);

const results: Array<[string, string]> = [];
const record = (name: string, value: string) => {
  results.push([name, value]);
  console.log(`${name}: ${value}`);
};

const database = await createTestDatabase();
const sink = await startSink();
const pods: Array<{ url: string; stop(): Promise<void> }> = [];
try {
  for (let index = 0; index < podCount; index += 1) {
    pods.push(
      await startPod(`bench-${index}`, {
        DATABASE_URL: database.url,
        WEBHOOK_URL: sink.url,
        WEBHOOK_CONCURRENCY: '32',
        LOG_LEVEL: 'warn',
      }),
    );
  }
  const api = pods[0]!.url;
  await call(api, 'PUT', '/jobs/stop');

  // 1. intake
  const singles = 2_000;
  const latencies: number[] = [];
  let started = performance.now();
  let next = 0;
  await Promise.all(
    Array.from({ length: 16 }, async () => {
      while (next < singles) {
        next += 1;
        const t = performance.now();
        await call(pods[next % pods.length]!.url, 'POST', '/messages', {
          to: '+905551111111',
          content: 'bench single',
        });
        latencies.push(performance.now() - t);
      }
    }),
  );
  let seconds = (performance.now() - started) / 1000;
  latencies.sort((a, b) => a - b);
  record(
    'POST /messages (16 clients)',
    `${Math.round(singles / seconds)} req/s, p50 ${ms(pct(latencies, 0.5))}, p99 ${ms(pct(latencies, 0.99))}`,
  );

  const batches = Math.max(1, Math.round((messagesTotal - singles) / 1000));
  started = performance.now();
  for (let batch = 0; batch < batches; batch += 1) {
    const messages = Array.from({ length: 1000 }, (_, i) => ({ to: '+905551111111', content: `bench ${batch}/${i}` }));
    await call(pods[batch % pods.length]!.url, 'POST', '/messages/batch', { messages });
  }
  seconds = (performance.now() - started) / 1000;
  record('POST /messages/batch (1,000 each)', `${Math.round((batches * 1000) / seconds)} messages/s`);
  const backlog = singles + batches * 1000;

  // 2. dispatch
  started = performance.now();
  // One run per job and slot, so several sender jobs let every pod work at once.
  for (let index = 0; index < senderJobs; index += 1) {
    await call(api, 'POST', '/jobs', {
      name: `bench-sender-${index}`,
      handler: 'send-messages',
      intervalSeconds: 1,
      batchSize: 10_000,
      active: true,
    });
  }
  while (sink.received().unique < backlog) {
    if (performance.now() - started > 600_000) throw new Error('dispatch did not finish within 10 minutes');
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  seconds = (performance.now() - started) / 1000;
  const report = sink.received();
  record(
    `dispatch to webhook (${podCount} pods, ${senderJobs} sender jobs)`,
    `${backlog} messages in ${seconds.toFixed(1)} s = ${Math.round(backlog / seconds)} messages/s; duplicates ${report.duplicates.length}`,
  );
  if (report.duplicates.length > 0) throw new Error('a message was delivered twice');
  await call(api, 'PUT', '/jobs/stop');
  await Promise.all(pods.map((pod) => pod.stop()));
  pods.length = 0;

  // 3. scale. Filling and reshaping a million rows is set-up, not what is measured: it runs on its own
  // connection without the service's statement timeout; the measured queries use the service's bounded pool.
  const setup = new pg.Client({ connectionString: database.url, options: '-c statement_timeout=0' });
  setup.on('error', () => {}); // dropped with the database at the end
  await setup.connect();
  await setup.query(
    `INSERT INTO messages (recipient, content, created_at, send_at, next_attempt_at, available)
     SELECT '+9055511' || lpad((g % 10000)::text, 5, '0'), 'scale ' || g, now() - make_interval(secs => $1 - g),
            CASE WHEN g % 10 = 0 THEN now() + interval '1 day' END,
            CASE WHEN g % 10 = 0 THEN now() + interval '1 day' ELSE now() END,
            g % 10 <> 0
     FROM generate_series(1, $1) AS g`,
    [scaleRows],
  );
  await setup.query('ANALYZE messages');
  const time = async (label: string, work: () => Promise<unknown>, repeat = 20) => {
    const samples: number[] = [];
    for (let i = 0; i < repeat; i += 1) {
      const t = performance.now();
      await work();
      samples.push(performance.now() - t);
    }
    samples.sort((a, b) => a - b);
    record(label, `median ${ms(pct(samples, 0.5))}, max ${ms(samples.at(-1)!)}`);
  };
  // What dispatch runs per chunk: promote due messages, claim the oldest available, one transaction.
  // Between samples the claimed messages go back as they were (available), so each sample claims anew.
  const claimAndPutBack = async () => {
    const claimed = await claimDueMessages(database.pool, {
      leaseSeconds: 60,
      owner: 'bench',
      executionId: null,
      maxMessages: 50,
    });
    await database.pool.query(
      "UPDATE messages SET status = 'pending', available = true, lease_until = NULL, locked_by = NULL WHERE id = ANY($1)",
      [claimed.map((row) => row.id)],
    );
  };
  await time(`ClaimMessages batch 50 (${scaleRows} pending)`, claimAndPutBack);
  const claimPlan = async () => {
    const plan = await database.pool.query({
      text: `EXPLAIN (FORMAT JSON) ${claimMessagesQuery}`,
      values: [60, 'bench', null, 50], // ClaimMessagesArgs order: leaseSeconds, owner, executionId, maxMessages
    });
    const names: string[] = [];
    const walk = (node: { 'Node Type': string; 'Index Name'?: string; Plans?: unknown[] }) => {
      if (node['Index Name'] && node['Index Name'] !== 'messages_pkey')
        names.push(`${node['Node Type']} on ${node['Index Name']}`);
      if (node['Node Type'] === 'Sort') names.push('Sort');
      for (const child of (node.Plans ?? []) as (typeof node)[]) walk(child);
    };
    walk(plan.rows[0]['QUERY PLAN'][0].Plan);
    return names.join(', ');
  };
  record('ClaimMessages plan (10% of the backlog scheduled ahead)', await claimPlan());
  await time(
    'CountPendingMessages (metrics gauge)',
    () => countPendingMessages(database.pool, { exactUpTo: PENDING_EXACT_UP_TO }),
    5,
  );
  await time('ListSentMessages first page of 20', () =>
    listSentMessages(database.pool, { afterSentAt: null, afterId: null, maxRows: 20 }),
  );
  const page = { afterCreatedAt: null, afterId: null, maxRows: 20 };
  await time('GET /messages first page of 20 (ListMessages, no filter)', () =>
    listMessages(database.pool, { status: null, recipient: null, ...page }),
  );
  await time('GET /messages?to= first page of 20 (100 messages per recipient)', () =>
    listMessages(database.pool, { status: null, recipient: '+905551100042', ...page }),
  );
  await time('GET /messages?status=pending&to= first page of 20', () =>
    listMessages(database.pool, { status: 'pending', recipient: '+905551100042', ...page }),
  );

  // Almost everything scheduled for tomorrow, 50 due now at the end of the order.
  await setup.query(
    "UPDATE messages SET send_at = now() + interval '1 day', next_attempt_at = now() + interval '1 day', available = false WHERE status = 'pending'",
  );
  await setup.query(
    `UPDATE messages SET send_at = NULL, next_attempt_at = now(), available = true
     WHERE id IN (SELECT id FROM messages WHERE status = 'pending' ORDER BY created_at DESC LIMIT 50)`,
  );
  await setup.query('VACUUM ANALYZE messages');
  record('ClaimMessages plan (all but 50 scheduled ahead)', await claimPlan());
  await time(`ClaimMessages batch 50 (${scaleRows} pending, all but 50 scheduled ahead)`, claimAndPutBack);

  // A campaign's send time comes: 100,000 of the scheduled messages (the oldest) are due at once.
  // Each claim promotes up to promotionBatch of them, then claims 50.
  const burst = Math.min(100_000, scaleRows);
  await setup.query(
    `UPDATE messages SET send_at = now() - interval '1 second', next_attempt_at = now() - interval '1 second'
     WHERE id IN (SELECT id FROM messages WHERE status = 'pending' AND NOT available ORDER BY created_at LIMIT $1)`,
    [burst],
  );
  await setup.query('VACUUM ANALYZE messages');
  await time(
    `ClaimMessages batch 50 during a burst (${burst} scheduled messages due at once, ${promotionBatch} promoted per claim)`,
    claimAndPutBack,
  );

  const failedRows = Math.min(100_000, scaleRows);
  await setup.query(
    `UPDATE messages SET status = 'failed', available = false, last_error = 'bench'
     WHERE id IN (SELECT id FROM messages WHERE status = 'pending' LIMIT $1)`,
    [failedRows],
  );
  await setup.query('VACUUM ANALYZE messages');
  const retryStarted = performance.now();
  const retried = await new MessageService(database.pool, { current: { messageMaxLength: 160 } }).retryFailed();
  const retryMs = performance.now() - retryStarted;
  record(
    `POST /messages/retry-failed (${failedRows} failed, statements of 1,000)`,
    `${retried} retried in ${(retryMs / 1000).toFixed(1)} s (${ms(retryMs / Math.ceil(retried / 1000))} per statement)`,
  );

  console.log(
    `\nMachine: ${cpus().length} × ${cpus()[0]?.model}, ${Math.round(totalmem() / 2 ** 30)} GiB, Node ${process.version}`,
  );
  console.log('\n| measurement | result |\n|---|---|');
  for (const [name, value] of results) console.log(`| ${name} | ${value} |`);
  await setup.end();
} finally {
  await Promise.all(pods.map((pod) => pod.stop()));
  await sink.close();
  await dropTestDatabase(database);
  await stopTestServer();
}
