// pg-boss used well: one job per message inserted in bulk, a batched worker
// (batchSize 100, localConcurrency 5, polling 0.5 s), each batch POSTed at once.
// The variant `burst` adds `burstWhenBatchFull` (pg-boss 12.30+): while a fetch
// comes back full the worker fetches again at once instead of waiting out the
// polling interval. Without it each of the 5 workers takes at most 100 jobs per
// 0.5 s, which caps pg-boss near 1,000/s whatever the webhook can take. The
// plain form is the configuration the targets in docs/benchmarks.md name; the
// bench reports both.
import { PgBoss } from 'pg-boss';
import { benchMessages, env, post, readyThenGo } from './common.ts';

const boss = new PgBoss({ connectionString: env.databaseUrl, schema: 'pgboss_bench', max: 10 });
boss.on('error', (error) => console.error(`pg-boss: ${error.message}`));
await boss.start();
await boss.createQueue('bench-send');
const messages = benchMessages();
for (let i = 0; i < messages.length; i += 1_000) {
  await boss.insert(
    'bench-send',
    messages.slice(i, i + 1_000).map((data) => ({ data })),
  );
}
await readyThenGo();
await boss.work<{ id: string; to: string; content: string }>(
  'bench-send',
  { batchSize: 100, localConcurrency: 5, pollingIntervalSeconds: 0.5, burstWhenBatchFull: env.variant === 'burst' },
  async (jobs) => {
    await Promise.all(jobs.map((job) => post(job.data)));
  },
);
