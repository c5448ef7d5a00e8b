// The growth scenario of `npm run bench` (`npm run bench -- --growth` runs it alone):
// the same reads, intake and dispatch against a 10,000-row and a 10,000,000-row
// `messages` table, each within 2x of the small one.
//
// Each size gets a throwaway database (a copy of the migrated template, dropped at
// the end) filled with INSERT … SELECT generate_series: a tenth of the rows
// pending and scheduled a day ahead, the rest sent (7 in 9) and failed (2 in 9),
// created over the last 29 days (inside the default 30-day retention, so the
// maintenance pass has nothing to remove), plus 1,000 due pending messages for
// the claim. Indexes are dropped for the fill and rebuilt after it, then
// VACUUM ANALYZE: the set-up is not what is measured. One real service process
// (`node src/main.ts`, jobs stopped) answers the HTTP requests.
//
// Sizes: BENCH_GROWTH_SMALL (10000), BENCH_GROWTH_ROWS (10000000). Results:
// a table on stdout and bench/results/growth-<time>.json.
import { mkdir, writeFile } from 'node:fs/promises';
import { cpus, totalmem } from 'node:os';
import pg from 'pg';
import { claimDueMessages } from '../src/delivery/claim.ts';
import { runMaintenancePass } from '../src/maintenance/maintenance.ts';
import { encodeCursor } from '../src/messages/cursor.ts';
import { silentLogger } from '../src/observability/logger.ts';
import { createTestDatabase, dropTestDatabase, stopTestServer, type TestDatabase } from '../test/support/postgres.ts';
import { call, ms, pct, startPod } from './support.ts';

/** Due pending messages in both tables: what the claim walks. */
const duePending = 1_000;
/** Failed messages each retry-failed sample sends back (a window of the newest failures). */
const retryWindow = 1_000;

interface Sample {
  median: number;
  p90: number;
}
type Results = Record<string, Sample>;

interface Stand {
  rows: number;
  database: TestDatabase;
  setup: pg.Client;
  pod: Awaited<ReturnType<typeof startPod>>;
  fillSeconds: number;
}

/**
 * Fills both tables, starts one service process on each, then takes every
 * measurement on both, sample by sample alternately (so a load spike on the
 * shared machine hits both sizes alike), and prints medians and their ratio.
 */
export async function runGrowth(): Promise<void> {
  const small = Number(process.env.BENCH_GROWTH_SMALL ?? 10_000);
  const large = Number(process.env.BENCH_GROWTH_ROWS ?? 10_000_000);
  const stands: Stand[] = [];
  let results: Record<number, Results>;
  try {
    for (const rows of [small, large]) await prepare(rows, stands);
    results = await measure(stands);
  } finally {
    for (const stand of stands) {
      await stand.pod?.stop();
      await stand.setup.end().catch(() => {});
      await dropTestDatabase(stand.database);
    }
    await stopTestServer();
  }
  const machine = `${cpus().length} × ${cpus()[0]?.model}, ${Math.round(totalmem() / 2 ** 30)} GiB, Node ${process.version}`;
  const fills = Object.fromEntries(stands.map((stand) => [stand.rows, Math.round(stand.fillSeconds)]));
  console.log(`\nMachine: ${machine}; fill (seconds by size) ${JSON.stringify(fills)}`);
  console.log(`\n| measurement | ${small.toLocaleString('en')} rows | ${large.toLocaleString('en')} rows | ratio |`);
  console.log('|---|---|---|---|');
  const over: string[] = [];
  for (const name of Object.keys(results[small]!)) {
    const a = results[small]![name]!;
    const b = results[large]![name]!;
    const ratio = b.median / a.median;
    if (ratio > 2) over.push(name);
    console.log(
      `| ${name} | ${ms(a.median)} (p90 ${ms(a.p90)}) | ${ms(b.median)} (p90 ${ms(b.p90)}) | ${ratio.toFixed(2)}x${ratio > 2 ? ' **over 2x**' : ''} |`,
    );
  }
  await mkdir(new URL('./results/', import.meta.url), { recursive: true });
  const file = new URL(`./results/growth-${new Date().toISOString().replace(/[:.]/g, '-')}.json`, import.meta.url);
  await writeFile(file, `${JSON.stringify({ machine, sizes: [small, large], fills, results }, null, 2)}\n`);
  console.log(
    `\n${over.length === 0 ? 'every measurement within 2x' : `over 2x: ${over.join('; ')}`}; ${file.pathname}`,
  );
}

/** A throwaway database of `rows` messages and a service process on it (pushed to `into` as soon as it exists, for clean-up). */
async function prepare(rows: number, into: Stand[]): Promise<void> {
  const database = await createTestDatabase();
  const setup = new pg.Client({ connectionString: database.url, options: '-c statement_timeout=0' });
  setup.on('error', () => {}); // dropped with the database at the end
  const stand = { rows, database, setup, fillSeconds: 0 } as Stand;
  into.push(stand);
  await setup.connect();
  const started = performance.now();
  await fill(setup, rows);
  stand.fillSeconds = (performance.now() - started) / 1000;
  const size = await setup.query<{ heap: string; indexes: string }>(
    "SELECT pg_table_size('messages') AS heap, pg_indexes_size('messages') AS indexes",
  );
  const perRow = (bytes: string) => Math.round(Number(bytes) / (rows + duePending));
  console.log(
    `${rows} rows filled in ${stand.fillSeconds.toFixed(0)} s; bytes per row: table ${perRow(size.rows[0]!.heap)}, indexes ${perRow(size.rows[0]!.indexes)}`,
  );
  stand.pod = await startPod(`growth-${rows}`, { DATABASE_URL: database.url, LOG_LEVEL: 'warn' });
  await call(stand.pod.url, 'PUT', '/jobs/stop');
}

/** Fills `messages` with `rows` rows (see the file's comment), indexes rebuilt after, then VACUUM ANALYZE. */
async function fill(setup: pg.Client, rows: number): Promise<void> {
  await setup.query("SET maintenance_work_mem = '512MB'");
  const { rows: indexes } = await setup.query<{ name: string; definition: string }>(
    `SELECT indexname AS name, indexdef AS definition FROM pg_indexes
     WHERE schemaname = current_schema() AND tablename = 'messages' AND indexname <> 'messages_pkey'`,
  );
  for (const index of indexes) await setup.query(`DROP INDEX ${index.name}`);
  // The primary key too, unless a foreign key (message_attempts) depends on it.
  const referenced = await setup.query("SELECT 1 FROM pg_constraint WHERE confrelid = 'messages'::regclass");
  const rebuildKey = referenced.rowCount === 0;
  if (rebuildKey) await setup.query('ALTER TABLE messages DROP CONSTRAINT messages_pkey');
  const chunk = 1_000_000;
  for (let from = 1; from <= rows; from += chunk) {
    await setup.query(
      `INSERT INTO messages (recipient, content, status, attempts, next_attempt_at, send_at, available,
                             external_message_id, last_error, created_at, updated_at, sent_at)
       SELECT '+9055511' || lpad((g % 10000)::text, 5, '0'), 'growth ' || g, k.status,
              CASE k.status WHEN 'failed' THEN 5 WHEN 'sent' THEN 1 ELSE 0 END,
              CASE WHEN k.status = 'pending' THEN now() + interval '1 day' ELSE t.created END,
              CASE WHEN k.status = 'pending' THEN now() + interval '1 day' END,
              false,
              CASE WHEN k.status = 'sent' THEN 'ext-' || g END,
              CASE WHEN k.status = 'failed' THEN 'HTTP 400' END,
              t.created,
              t.created + CASE k.status WHEN 'sent' THEN interval '1 minute' WHEN 'failed' THEN interval '5 minutes'
                                        ELSE interval '0' END,
              CASE WHEN k.status = 'sent' THEN t.created + interval '1 minute' END
       FROM generate_series($1::bigint, $2::bigint) AS g,
            LATERAL (SELECT CASE WHEN g % 10 = 0 THEN 'pending' WHEN g % 10 IN (1, 2) THEN 'failed' ELSE 'sent' END
                     AS status) AS k,
            LATERAL (SELECT now() - interval '29 days' + (g::float8 / $3) * interval '29 days' - interval '1 hour'
                     AS created) AS t`,
      [from, Math.min(rows, from + chunk - 1), rows],
    );
  }
  await setup.query(
    `INSERT INTO messages (recipient, content, available, created_at)
     SELECT '+905551100000', 'due ' || g, true, now() - interval '30 minutes' + g * interval '1 millisecond'
     FROM generate_series(1, $1::integer) AS g`,
    [duePending],
  );
  if (rebuildKey) await setup.query('ALTER TABLE messages ADD CONSTRAINT messages_pkey PRIMARY KEY (id)');
  for (const index of indexes) await setup.query(index.definition);
  await setup.query('VACUUM (ANALYZE) messages');
}

async function measure(stands: Stand[]): Promise<Record<number, Results>> {
  const results: Record<number, Results> = Object.fromEntries(stands.map((stand) => [stand.rows, {}]));
  /** `work(stand)` on each stand in turn, `repeat` rounds after a warm-up round. */
  const time = async (label: string, work: (stand: Stand) => Promise<unknown>, repeat = 30, pauseMs = 0) => {
    for (const stand of stands) await work(stand); // warm-up
    const samples = new Map<Stand, number[]>(stands.map((stand) => [stand, []]));
    for (let i = 0; i < repeat; i += 1) {
      if (pauseMs > 0) await new Promise((resolve) => setTimeout(resolve, pauseMs));
      for (const stand of i % 2 === 0 ? stands : [...stands].reverse()) {
        const t = performance.now();
        await work(stand);
        samples.get(stand)!.push(performance.now() - t);
      }
    }
    for (const stand of stands) {
      const sorted = samples.get(stand)!.sort((a, b) => a - b);
      results[stand.rows]![label] = { median: pct(sorted, 0.5), p90: pct(sorted, 0.9) };
    }
    console.log(
      `${label}: ${stands.map((stand) => `${stand.rows}: ${ms(results[stand.rows]![label]!.median)}`).join(', ')}`,
    );
  };
  const get = async (stand: Stand, path: string) => {
    const response = await fetch(`${stand.pod.url}${path}`);
    if (!response.ok) throw new Error(`GET ${path}: HTTP ${response.status}`);
    return response.text();
  };

  // Dispatch: what a delivery run does per chunk (promote, claim 50, one transaction); then put them back.
  await time('claim (promote + claim 50, as dispatch runs it)', async ({ database, setup }) => {
    const claimed = await claimDueMessages(database.pool, {
      leaseSeconds: 60,
      owner: 'growth',
      executionId: null,
      maxMessages: 50,
    });
    await setup.query(
      "UPDATE messages SET status = 'pending', available = true, lease_until = NULL, locked_by = NULL WHERE id = ANY($1)",
      [claimed.map((row) => row.id)],
    );
  });
  await time('POST /messages', ({ pod }) =>
    call(pod.url, 'POST', '/messages', { to: '+905551111111', content: 'growth' }),
  );
  await time('GET /messages/sent first page of 20', (stand) => get(stand, '/messages/sent?limit=20'));
  const deep = new Map<Stand, string>();
  for (const stand of stands) {
    const middle = await stand.setup.query<{ at: string; id: string }>(
      `SELECT sent_at::text AS at, id FROM messages WHERE status = 'sent'
       ORDER BY sent_at DESC, id DESC OFFSET $1 LIMIT 1`,
      [Math.floor((stand.rows * 0.7) / 2)],
    );
    deep.set(stand, encodeCursor(middle.rows[0]!));
  }
  await time('GET /messages/sent a deep page (half way through)', (stand) =>
    get(stand, `/messages/sent?limit=20&cursor=${deep.get(stand)}`),
  );
  await time('GET /messages?status=failed first page of 20', (stand) => get(stand, '/messages?status=failed&limit=20'));
  await time('GET /health-check', (stand) => get(stand, '/health-check'));
  // The database-backed gauges are cached 5 s per pod: each round waits that out, so every scrape reads them.
  await time('GET /metrics (cache expired: reads the database)', (stand) => get(stand, '/metrics'), 5, 5_100);
  // retry-failed over a window holding the newest retryWindow failures, put back to failed after each sample.
  const windows = new Map<Stand, { since: Date; until: Date; ids: string[]; updatedAts: string[] }>();
  for (const stand of stands) windows.set(stand, await failureWindow(stand.setup));
  await time(
    `POST /messages/retry-failed (a window of ${retryWindow} failures)`,
    async (stand) => {
      const { since, until, ids, updatedAts } = windows.get(stand)!;
      const answer = (await call(stand.pod.url, 'POST', '/messages/retry-failed', {
        since: since.toISOString(),
        until: until.toISOString(),
      })) as { retried: number };
      if (answer.retried !== ids.length) throw new Error(`retry-failed retried ${answer.retried}, not ${ids.length}`);
      await stand.setup.query(
        `UPDATE messages AS m SET status = 'failed', available = false, attempts = 5, updated_at = v.updated_at::timestamptz
         FROM unnest($1::uuid[], $2::text[]) AS v(id, updated_at) WHERE m.id = v.id`,
        [ids, updatedAts],
      );
    },
    5,
  );
  await time(
    'maintenance pass (nothing past retention)',
    ({ database }) => runMaintenancePass({ pool: database.pool, owner: 'growth', logger: silentLogger() }, 30),
    5,
  );
  // Last, as it changes the tables: a pass with a 28-day window removes the oldest day's terminal messages.
  for (const stand of stands) {
    const t = performance.now();
    const pass = await runMaintenancePass({ pool: stand.database.pool, owner: 'growth', logger: silentLogger() }, 28);
    const seconds = (performance.now() - t) / 1000;
    const removed = pass.ran ? pass.removed.messages : 0;
    console.log(
      `${stand.rows}: retention pass removed ${removed} messages in ${seconds.toFixed(1)} s = ${Math.round(removed / seconds)} rows/s`,
    );
  }
  return results;
}

/** The newest `retryWindow` failures: a [since, until) window holding them (ms precision), their ids and updated_at. */
async function failureWindow(setup: pg.Client) {
  const window = await setup.query<{ since: Date; until: Date }>(
    `SELECT date_trunc('milliseconds', min(updated_at)) AS since,
            date_trunc('milliseconds', max(updated_at)) + interval '1 millisecond' AS until
     FROM (SELECT updated_at FROM messages WHERE status = 'failed' ORDER BY updated_at DESC LIMIT $1) AS newest`,
    [retryWindow],
  );
  const { since, until } = window.rows[0]!;
  const inWindow = await setup.query<{ id: string; updated_at: string }>(
    `SELECT id, updated_at::text AS updated_at FROM messages
     WHERE status = 'failed' AND updated_at >= $1 AND updated_at < $2`,
    [since, until],
  );
  return {
    since,
    until,
    ids: inWindow.rows.map((row) => row.id),
    updatedAts: inWindow.rows.map((row) => row.updated_at),
  };
}
