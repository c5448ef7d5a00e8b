// Graphile Worker used well: jobs added in bulk with addJobs, a worker with
// BENCH_CONTENDER_CONCURRENCY (the bench keeps the best of 10, 25 and 50).
import { Logger, makeWorkerUtils, run } from 'graphile-worker';
import { type BenchMessage, benchMessages, env, post, readyThenGo } from './common.ts';

// Silent: its per-job log lines would cost it CPU the others do not spend.
const logger = new Logger(() => () => {});
const utils = await makeWorkerUtils({ connectionString: env.databaseUrl, logger });
await utils.migrate();
const messages = benchMessages();
for (let i = 0; i < messages.length; i += 1_000) {
  await utils.addJobs(messages.slice(i, i + 1_000).map((payload) => ({ identifier: 'send', payload })));
}
await utils.release();
await readyThenGo();
await run({
  connectionString: env.databaseUrl,
  concurrency: env.concurrency,
  noHandleSignals: true,
  pollInterval: 500,
  logger,
  taskList: { send: async (payload) => post(payload as BenchMessage) },
});
