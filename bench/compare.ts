// The side-by-side part of `npm run bench`: this service (1 and 2 pods, default
// settings), pg-boss used well, Graphile Worker used well (the best of
// concurrency 10, 25, 50) and the HTTP-only ceiling, each delivering the same
// messages to the same sink from the same throwaway PostgreSQL cluster, repeats
// interleaved, medians reported. Also: CPU seconds (the contender's process and
// PostgreSQL) and WAL bytes per 10,000 messages, idle and peak RSS of a pod,
// cold start to alive, trigger lateness of 1-second jobs, and a webhook that
// serves at most 20 requests at once in 50 ms each (503 beyond).
//
// Writes bench/results/latest.json and bench/results/dispatch.svg.
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { type ReceivedItem, startSink } from '../src/sink/server.ts';
import { PgCluster } from '../test/faults/support/cluster.ts';
import { launchNode, startPod, type TestProcess } from '../test/support/processes.ts';
import { cpuSeconds, median, postgresCpuSeconds, sampleRss, throughputChart } from './measure.ts';
import { measurePodMemory, medianPodMemory, type PodMemory } from './pod-memory.ts';
import { call, postMessages } from './support.ts';

export interface ComparisonOptions {
  quick: boolean;
  /**
   * `--profile`: this service alone (1 pod), its pod under `node --cpu-prof`
   * (profiles in .bench/profile/), the cluster with pg_stat_statements, whose
   * top statements by total time are printed after the run.
   */
  profile?: boolean;
  /**
   * `--service`: this service alone (1 pod), BENCH_COMPARE_REPEATS runs (default 3), no profiler: a before/after
   * check of a change in minutes, each run printed with its CPU and WAL per 10,000 messages.
   */
  serviceOnly?: boolean;
  /**
   * `--capped`: the capped webhook alone (at most 20 at once, 50 ms each), BENCH_COMPARE_REPEATS runs of
   * BENCH_CAPPED_MESSAGES messages (default 6,000, what the full run sends).
   */
  cappedOnly?: boolean;
}

interface DispatchResult {
  contender: string;
  messagesPerSecond: number;
  cpuSecondsPer10k: number;
  processCpuSecondsPer10k: number;
  postgresCpuSecondsPer10k: number;
  walBytesPer10k: number;
  /** The sink's CPU (this orchestrator process, which serves it) per 10,000: what the webhook side cost. */
  sinkCpuSecondsPer10k: number;
  peakRssMb: number;
  duplicates: number;
}

/** Keeps this thread busy for `microseconds` (the sink's CPU per request, BENCH_SINK_WORK_US). */
function busyFor(microseconds: number): void {
  const until = performance.now() + microseconds / 1000;
  while (performance.now() < until) {}
}

const contenderEntry = (name: string) => new URL(`./contenders/${name}.ts`, import.meta.url).pathname;

/** Counts what the sink accepted since the last reset: distinct keys, keys accepted twice, refusals. */
function deliveryCounter() {
  let keys = new Set<string>();
  let duplicates = 0;
  let refused: Array<number> = [];
  let lastAt = 0;
  return {
    onDelivery(item: ReceivedItem) {
      if (item.status >= 200 && item.status < 300 && item.idempotencyKey) {
        if (keys.has(item.idempotencyKey)) duplicates += 1;
        keys.add(item.idempotencyKey);
        lastAt = performance.now();
      } else refused.push(performance.now());
    },
    reset() {
      keys = new Set();
      duplicates = 0;
      refused = [];
      lastAt = 0;
    },
    get unique() {
      return keys.size;
    },
    get duplicates() {
      return duplicates;
    },
    get refused() {
      return refused;
    },
    get lastAt() {
      return lastAt;
    },
  };
}

export async function runComparison(options: ComparisonOptions): Promise<Record<string, unknown>> {
  const messages = Number(process.env.BENCH_COMPARE_MESSAGES ?? (options.quick ? 5_000 : 20_000));
  const repeats = options.quick ? 1 : Number(process.env.BENCH_COMPARE_REPEATS ?? 3);
  const profileDir = new URL('../.bench/profile/', import.meta.url).pathname;
  // The memory part posts what the outside check posts, quick or not: 20,000 messages, a 10,000-message claim.
  const memoryMessages = Number(process.env.BENCH_MEMORY_MESSAGES ?? 20_000);
  const cluster = await PgCluster.create(
    options.profile
      ? {
          shared_preload_libraries: 'pg_stat_statements',
          'pg_stat_statements.track': 'all',
          'pg_stat_statements.track_planning': 'on',
        }
      : {},
  );
  const admin = new pg.Client({ connectionString: cluster.url() });
  await admin.connect();
  const counter = deliveryCounter();
  // BENCH_SINK_LATENCY_MS: the sink answers each POST after this long, a webhook bound by its latency rather
  // than by CPU (the ceiling's 50 POSTs in flight then make 50 / latency a second at most).
  const sinkLatencyMs = Number(process.env.BENCH_SINK_LATENCY_MS ?? 0);
  // BENCH_SINK_WORK_US: the sink spends this much CPU (µs, a busy loop) on each POST before answering, a webhook
  // bound by its CPU: with 150, one core serves about 3,000 to 5,000 a second (its HTTP work included), whoever sends.
  const sinkWorkUs = Number(process.env.BENCH_SINK_WORK_US ?? 0);
  const sink = await startSink({
    latencyMs: sinkLatencyMs,
    onDelivery: (item) => {
      counter.onDelivery(item);
      if (sinkWorkUs > 0) busyFor(sinkWorkUs);
    },
  });
  let databases = 0;
  const freshDatabase = async () => {
    databases += 1;
    await admin.query(`CREATE DATABASE bench_${databases}`);
    return cluster.url(`bench_${databases}`);
  };
  const walLsn = async () => String((await admin.query('SELECT pg_current_wal_lsn() AS lsn')).rows[0].lsn);
  const walSince = async (from: string) =>
    Number((await admin.query('SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), $1) AS bytes', [from])).rows[0].bytes);

  /** Runs `start` (which makes the contender begin) and waits until the sink has every message. */
  async function measure(contender: string, pids: () => number[], start: () => Promise<void>): Promise<DispatchResult> {
    const wal = await walLsn();
    const postgres = postgresCpuSeconds(cluster.pid!);
    const processCpu = pids().reduce((sum, pid) => sum + cpuSeconds(pid), 0);
    const sinkCpu = process.cpuUsage();
    const rss = sampleRss(pids);
    const began = performance.now();
    await start();
    while (counter.unique < messages) {
      if (performance.now() - began > 600_000) throw new Error(`${contender}: not delivered within 10 minutes`);
      await sleep(20);
    }
    const seconds = (counter.lastAt - began) / 1000;
    const per10k = 10_000 / messages;
    const processSeconds = pids().reduce((sum, pid) => sum + cpuSeconds(pid), 0) - processCpu;
    const postgresSeconds = postgresCpuSeconds(cluster.pid!) - postgres;
    const sinkUsage = process.cpuUsage(sinkCpu);
    return {
      contender,
      messagesPerSecond: messages / seconds,
      cpuSecondsPer10k: (processSeconds + postgresSeconds) * per10k,
      processCpuSecondsPer10k: processSeconds * per10k,
      postgresCpuSecondsPer10k: postgresSeconds * per10k,
      walBytesPer10k: (await walSince(wal)) * per10k,
      sinkCpuSecondsPer10k: ((sinkUsage.user + sinkUsage.system) / 1e6) * per10k,
      peakRssMb: rss.stop(),
      duplicates: counter.duplicates,
    };
  }

  /** A contender process (bench/contenders/): enqueues, says "ready", starts on "go". */
  async function runContender(name: string, file: string, concurrency: number, variant = '') {
    counter.reset();
    const child = launchNode(contenderEntry(file), {
      name,
      stdin: true,
      env: {
        BENCH_CONTENDER_DATABASE_URL: await freshDatabase(),
        BENCH_CONTENDER_SINK_URL: `${sink.url}/webhook`,
        BENCH_CONTENDER_MESSAGES: String(messages),
        BENCH_CONTENDER_CONCURRENCY: String(concurrency),
        BENCH_CONTENDER_VARIANT: variant,
        BENCH_CONTENDER_RUN: `${name}-${databases}`,
      },
    });
    try {
      await child.waitForLine((line) => line.msg === 'ready', 300_000);
      return await measure(
        name,
        () => [child.pid],
        async () => child.write('go\n'),
      );
    } finally {
      await child.stop('SIGKILL');
    }
  }

  // The bench's own WEBHOOK_* variables reach every pod (WEBHOOK_CONCURRENCY=50 npm run bench …), the URL excepted.
  const webhookSettings = Object.fromEntries(
    Object.entries(process.env).filter(([name, value]) => name.startsWith('WEBHOOK_') && value !== undefined),
  ) as Record<string, string>;
  const podEnv = (url: string) => ({
    ...webhookSettings,
    DATABASE_URL: url,
    WEBHOOK_URL: `${sink.url}/webhook`,
    FETCH_INTERVAL_MS: '1000',
    ...(options.profile ? { NODE_OPTIONS: `--cpu-prof --cpu-prof-dir=${profileDir}` } : {}),
  });

  /** This service with its defaults: `podCount` pods, one 1-second sender job per pod (batch 10,000). */
  async function runService(podCount: number) {
    counter.reset();
    const url = await freshDatabase();
    const pods: TestProcess[] = [];
    try {
      for (let i = 0; i < podCount; i += 1)
        pods.push(await startPod(`bench-${databases}-${i}`, podEnv(url), { timeoutMs: 180_000 }));
      await call(pods[0]!.url, 'PUT', '/jobs/stop');
      await postMessages(
        pods.map((pod) => pod.url),
        messages,
        'bench',
      );
      if (options.profile) await resetStatements(url);
      const result = await measure(
        `job-manager, ${podCount} pod${podCount > 1 ? 's' : ''}`,
        () => pods.map((pod) => pod.pid),
        async () => {
          for (let i = 0; i < podCount; i += 1) {
            await call(pods[0]!.url, 'POST', '/jobs', {
              name: `bench-sender-${i}`,
              handler: 'send-messages',
              intervalSeconds: 1,
              batchSize: 10_000,
              active: true,
            });
          }
        },
      );
      const lateness =
        podCount === 1 && !options.profile && !options.serviceOnly
          ? await measureLateness(pods[0]!, url, options.quick ? 10 : 20)
          : undefined;
      return { result, lateness, url };
    } finally {
      await Promise.all(pods.map((pod) => pod.stop('SIGTERM')));
    }
  }

  if (options.profile) {
    mkdirSync(profileDir, { recursive: true });
    const service = await runService(1);
    console.log(`  ${service.result.contender}: ${Math.round(service.result.messagesPerSecond)} messages/s`);
    await printTopStatements(service.url);
    await sink.close();
    await admin.end();
    await cluster.destroy();
    console.log(`CPU profile of the pod: ${profileDir} (open in Chrome DevTools or speedscope)`);
    return { profile: service.result };
  }

  if (options.cappedOnly) {
    const results = [];
    for (let repeat = 0; repeat < Number(process.env.BENCH_COMPARE_REPEATS ?? 3); repeat += 1) {
      const result = await runCappedWebhook(freshDatabase, Number(process.env.BENCH_CAPPED_MESSAGES ?? 6_000));
      console.log(`  ${JSON.stringify(result)}`);
      results.push(result);
    }
    await sink.close();
    await admin.end();
    await cluster.destroy();
    return { cappedWebhook: results };
  }

  if (options.serviceOnly) {
    const results: DispatchResult[] = [];
    for (let repeat = 0; repeat < Number(process.env.BENCH_COMPARE_REPEATS ?? 3); repeat += 1) {
      const { result } = await runService(1);
      console.log(`  ${JSON.stringify(result)}`);
      results.push(result);
    }
    await sink.close();
    await admin.end();
    await cluster.destroy();
    return { service: results };
  }

  const runs: Record<string, DispatchResult[]> = {};
  const lateness: number[][] = [];
  const graphileConcurrency = options.quick ? [25] : [10, 25, 50];
  for (let repeat = 0; repeat < repeats; repeat += 1) {
    const add = (key: string, result: DispatchResult) => {
      runs[key] = [...(runs[key] ?? []), result];
      console.log(`  ${result.contender}: ${Math.round(result.messagesPerSecond)} messages/s`);
    };
    console.log(`repeat ${repeat + 1} of ${repeats} (${messages} messages each)`);
    for (const podCount of [1, 2]) {
      const service = await runService(podCount);
      add(`service-${podCount}`, service.result);
      if (service.lateness) lateness.push(service.lateness);
    }
    add('pg-boss', await runContender('pg-boss', 'pg-boss', 0));
    add('pg-boss-burst', await runContender('pg-boss, burstWhenBatchFull', 'pg-boss', 0, 'burst'));
    for (const concurrency of graphileConcurrency) {
      add(
        `graphile-${concurrency}`,
        await runContender(`graphile-worker ${concurrency}`, 'graphile-worker', concurrency),
      );
    }
    add('http-ceiling', await runContender('HTTP-only ceiling', 'http-ceiling', 50));
  }

  const summary = (key: string) => {
    const list = runs[key] ?? [];
    const pick = (field: keyof DispatchResult) => median(list.map((run) => Number(run[field])));
    return {
      contender: list[0]?.contender ?? key,
      messagesPerSecond: pick('messagesPerSecond'),
      cpuSecondsPer10k: pick('cpuSecondsPer10k'),
      processCpuSecondsPer10k: pick('processCpuSecondsPer10k'),
      postgresCpuSecondsPer10k: pick('postgresCpuSecondsPer10k'),
      walBytesPer10k: pick('walBytesPer10k'),
      sinkCpuSecondsPer10k: pick('sinkCpuSecondsPer10k'),
      peakRssMb: pick('peakRssMb'),
      duplicates: Math.max(...list.map((run) => run.duplicates)),
      runs: list.map((run) => Math.round(run.messagesPerSecond)),
    };
  };
  const graphileBest = graphileConcurrency
    .map((concurrency) => summary(`graphile-${concurrency}`))
    .sort((a, b) => b.messagesPerSecond - a.messagesPerSecond)[0]!;
  const table = [
    summary('service-1'),
    summary('service-2'),
    summary('pg-boss'),
    graphileBest,
    summary('http-ceiling'),
    summary('pg-boss-burst'),
  ];

  // A pod's memory and cold start, measured from outside on a fresh database (bench/pod-memory.ts).
  const podRuns: PodMemory[] = [];
  for (let repeat = 0; repeat < repeats; repeat += 1)
    podRuns.push(await measurePodMemory({ databaseUrl: await freshDatabase(), messages: memoryMessages }));
  const pod = medianPodMemory(podRuns);
  console.log(`  pod: idle ${pod.idleRssMb.toFixed(0)} MB, peak ${pod.peakRssMb.toFixed(0)} MB (${pod.command})`);
  counter.reset();
  const capped = await runCappedWebhook(freshDatabase, options.quick ? 2_000 : 6_000);
  const allLateness = lateness.flat().sort((a, b) => a - b);
  const result = {
    measuredAt: new Date().toISOString(),
    machine: `${cpus().length} × ${cpus()[0]?.model}, ${Math.round(totalmem() / 2 ** 30)} GiB, Node ${process.version}`,
    command: `npm run bench${options.quick ? ' -- --quick' : ''}`,
    messages,
    repeats,
    sinkLatencyMs,
    sinkWorkUs,
    dispatch: table,
    ratios: {
      vsPgBoss: table[0]!.messagesPerSecond / table[2]!.messagesPerSecond,
      vsGraphileWorker: table[0]!.messagesPerSecond / graphileBest.messagesPerSecond,
      ofHttpCeiling: table[0]!.messagesPerSecond / table[4]!.messagesPerSecond,
      cpuVsPgBoss: table[0]!.cpuSecondsPer10k / table[2]!.cpuSecondsPer10k,
      vsPgBossBurst: table[0]!.messagesPerSecond / table[5]!.messagesPerSecond,
      cpuVsPgBossBurst: table[0]!.cpuSecondsPer10k / table[5]!.cpuSecondsPer10k,
    },
    pod: {
      command: pod.command,
      messages: memoryMessages,
      idleRssMb: pod.idleRssMb,
      peakRssMb: pod.peakRssMb,
      intakePeakRssMb: pod.intakePeakRssMb,
      dispatchPeakRssMb: pod.dispatchPeakRssMb,
      afterRssMb: pod.afterRssMb,
      coldStartToAliveMs: pod.coldStartToAliveMs,
      processes: pod.processes,
    },
    lateness1sJobs: {
      runs: allLateness.length,
      p50Ms: 1000 * (allLateness[Math.floor(allLateness.length * 0.5)] ?? 0),
      p99Ms: 1000 * (allLateness[Math.min(allLateness.length - 1, Math.floor(allLateness.length * 0.99))] ?? 0),
      maxMs: 1000 * (allLateness.at(-1) ?? 0),
    },
    cappedWebhook: capped,
  };
  mkdirSync(new URL('./results/', import.meta.url), { recursive: true });
  writeFileSync(new URL('./results/latest.json', import.meta.url), `${JSON.stringify(result, null, 2)}\n`);
  writeFileSync(
    new URL('./results/dispatch.svg', import.meta.url),
    throughputChart(
      table.map((row) => ({ name: row.contender, value: row.messagesPerSecond })),
      `Dispatch, ${messages} messages, median of ${repeats} (${result.machine.split(',')[0]})`,
    ),
  );
  await sink.close();
  await admin.end();
  await cluster.destroy();
  return result;
}

/** Starts pg_stat_statements afresh, so it counts dispatch alone. */
async function resetStatements(url: string): Promise<void> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    await client.query('CREATE EXTENSION IF NOT EXISTS pg_stat_statements');
    await client.query('SELECT pg_stat_statements_reset()');
  } finally {
    await client.end();
  }
}

/** pg_stat_statements of the bench database: the statements that took the most time, with calls and rows. */
async function printTopStatements(url: string): Promise<void> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    const { rows } = await client.query(
      `SELECT calls, round(total_exec_time::numeric, 1) AS exec_ms, round(total_plan_time::numeric, 1) AS plan_ms,
              rows, wal_bytes,
              left(regexp_replace(query, '\\s+', ' ', 'g'), 110) AS query
       FROM pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
       ORDER BY total_exec_time + total_plan_time DESC LIMIT 25`,
    );
    console.table(rows);
  } finally {
    await client.end();
  }
}

/** Three 1-second jobs for `seconds`: how late each run started after its slot (s), from pg-boss's rows. */
async function measureLateness(pod: TestProcess, url: string, seconds: number): Promise<number[]> {
  for (let i = 0; i < 3; i += 1) {
    await call(pod.url, 'POST', '/jobs', {
      name: `lateness-${i}`,
      handler: 'send-messages',
      intervalSeconds: 1,
      batchSize: 10,
      active: true,
    });
  }
  await sleep(seconds * 1000);
  await call(pod.url, 'PUT', '/jobs/stop');
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    const { rows } = await client.query(
      `SELECT extract(epoch FROM started_on - (data->>'dueAt')::timestamptz)::float8 AS late
       FROM pgboss.job WHERE name = 'job-runs' AND started_on IS NOT NULL AND data->>'jobName' LIKE 'lateness-%'`,
    );
    return rows.map((row) => Number(row.late));
  } finally {
    await client.end();
  }
}

/** One pod with defaults against a webhook serving at most 20 at once in 50 ms (503 beyond, no Retry-After). */
async function runCappedWebhook(freshDatabase: () => Promise<string>, messages: number) {
  const sent = new Set<string>();
  const refusals: number[] = [];
  let began = 0;
  let lastAt = 0;
  const sink = await startSink({
    maxConcurrent: 20,
    latencyMs: 50,
    onDelivery(item) {
      if (item.status === 503) refusals.push(performance.now() - began);
      else if (item.idempotencyKey) {
        sent.add(item.idempotencyKey);
        lastAt = performance.now();
      }
    },
  });
  const pod = await startPod(
    'bench-capped',
    {
      DATABASE_URL: await freshDatabase(),
      WEBHOOK_URL: `${sink.url}/webhook`,
      FETCH_INTERVAL_MS: '1000',
    },
    { timeoutMs: 180_000 },
  );
  try {
    await call(pod.url, 'PUT', '/jobs/stop');
    await postMessages([pod.url], messages, 'capped');
    began = performance.now();
    await call(pod.url, 'POST', '/jobs', {
      name: 'bench-capped',
      handler: 'send-messages',
      intervalSeconds: 1,
      batchSize: 10_000,
      active: true,
    });
    while (sent.size < messages) {
      if (performance.now() - began > 300_000) throw new Error('capped webhook: not delivered within 5 minutes');
      await sleep(20);
    }
    const seconds = (lastAt - began) / 1000;
    const accepted = messages; // one accepted POST per message (the sink counts keys)
    const lateRefusals = refusals.filter((at) => at > 5_000).length;
    const lateRequests = lateRefusals + accepted * Math.max(0, (seconds - 5) / seconds);
    return {
      messages,
      messagesPerSecond: messages / seconds,
      ofCap: messages / seconds / 400,
      refusals: refusals.length,
      refusedShareAfter5s: lateRequests > 0 ? lateRefusals / lateRequests : 0,
    };
  } finally {
    await pod.stop('SIGTERM');
    await sink.close();
  }
}
