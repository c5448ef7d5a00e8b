// Where a pod's CPU goes: one pod with its defaults dispatches BENCH_POD_CPU_MESSAGES (20,000) messages, posted
// in batches of 1,000, by one 1 s sender job of batch 10,000, once to the bench's sink (its plain form: the
// BENCH_SINK_* variables do not apply) and once in dry-run mode (no WEBHOOK_URL: everything but the HTTP
// requests), BENCH_COMPARE_REPEATS (2) times each, alternated, on a throwaway PostgreSQL cluster of its own.
// Prints messages/s and the CPU seconds per 10,000 messages of the pod and of PostgreSQL's processes during
// dispatch (from /proc), and the sink's (this process's, which also polls the database for the end). The
// backend that answers that poll is left out of PostgreSQL's figure.
//
//   node bench/pod-cpu.ts
import pg from 'pg';
import { startSink } from '../src/sink/server.ts';
import { PgCluster } from '../test/faults/support/cluster.ts';
import { startPod } from '../test/support/processes.ts';
import { cpuSeconds, postgresCpuSeconds } from './measure.ts';
import { call, postMessages } from './support.ts';

const messages = Number(process.env.BENCH_POD_CPU_MESSAGES ?? 20_000);
const repeats = Number(process.env.BENCH_COMPARE_REPEATS ?? 2);
const cluster = await PgCluster.create();
const sink = await startSink();
let databases = 0;

/** One dispatch of `messages` by a fresh pod on a fresh database; `webhook` false: dry-run mode. */
async function dispatch(webhook: boolean): Promise<string> {
  databases += 1;
  await cluster.query(`CREATE DATABASE pod_cpu_${databases}`);
  const url = cluster.url(`pod_cpu_${databases}`);
  const env: Record<string, string> = { DATABASE_URL: url, FETCH_INTERVAL_MS: '1000' };
  if (webhook) env.WEBHOOK_URL = `${sink.url}/webhook`;
  const pod = await startPod(`pod-cpu-${databases}`, env, { timeoutMs: 120_000 });
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    await call(pod.url, 'PUT', '/jobs/stop');
    await postMessages([pod.url], messages, 'cpu');
    // The poll below counts sent messages every 20 ms: its backend's CPU is the bench's, not the service's.
    const poller = (await client.query('SELECT pg_backend_pid() AS pid')).rows[0].pid as number;
    const postgresCpu = () => postgresCpuSeconds(cluster.pid!) - cpuSeconds(poller);
    const pod0 = cpuSeconds(pod.pid);
    const postgres0 = postgresCpu();
    const sink0 = process.cpuUsage();
    const began = performance.now();
    await call(pod.url, 'POST', '/jobs', {
      name: 'pod-cpu-sender',
      handler: 'send-messages',
      intervalSeconds: 1,
      batchSize: 10_000,
      active: true,
    });
    for (;;) {
      const { rows } = await client.query("SELECT count(*)::int AS n FROM messages WHERE status = 'sent'");
      if (rows[0].n >= messages) break;
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    const seconds = (performance.now() - began) / 1000;
    const per10k = 10_000 / messages;
    const sinkUsage = process.cpuUsage(sink0);
    return [
      webhook ? 'webhook' : 'dry-run',
      `${Math.round(messages / seconds)} messages/s`,
      `pod ${((cpuSeconds(pod.pid) - pod0) * per10k).toFixed(2)}`,
      `PostgreSQL ${((postgresCpu() - postgres0) * per10k).toFixed(2)}`,
      `sink ${(((sinkUsage.user + sinkUsage.system) / 1e6) * per10k).toFixed(2)} CPU s per 10,000`,
    ].join(', ');
  } finally {
    await client.end();
    await pod.stop('SIGTERM');
  }
}

try {
  for (let repeat = 0; repeat < repeats; repeat += 1) {
    console.log(await dispatch(true));
    console.log(await dispatch(false));
  }
} finally {
  await sink.close();
  await cluster.destroy();
}
