// What running a bare statement as its own transaction costs (the service
// pool's query() behind a transaction pooler: BEGIN + SET LOCAL, the
// statement, COMMIT) against a bare statement (the service pool on a real
// session is node-postgres's own query()), one connection, same server,
// five interleaved rounds, medians.
// Usage: DATABASE_URL=postgres://… node bench/statement-overhead.ts [statements]
import type pg from 'pg';
import { createPool } from '../src/db/pool.ts';

const url = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
const count = Number(process.argv[2] ?? 2_000);
const service = createPool({ connectionString: url, max: 1, transactionPooler: true });
const plain = createPool({ connectionString: url, max: 1 });

async function perStatementMs(pool: pg.Pool): Promise<number> {
  const started = performance.now();
  for (let index = 0; index < count; index += 1) await pool.query('SELECT 1');
  return (performance.now() - started) / count;
}

const rounds: Array<{ plain: number; service: number }> = [];
for (let round = 0; round < 5; round += 1)
  rounds.push({ plain: await perStatementMs(plain), service: await perStatementMs(service) });
const median = (values: number[]) => values.sort((a, b) => a - b)[Math.floor(values.length / 2)]!;
const result = {
  statements: count,
  plainMs: median(rounds.map((r) => r.plain)),
  serviceMs: median(rounds.map((r) => r.service)),
};
console.log(JSON.stringify({ ...result, extraMs: result.serviceMs - result.plainMs }));
await Promise.all([service.end(), plain.end()]);
