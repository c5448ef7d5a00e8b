// A pod's memory and cold start, measured from outside as an operator's
// orchestrator sees them: the resident set of every process of the pod (the
// process started and all its descendants, read from /proc), never the pod's
// own opinion of itself.
//
//   cold start  spawn → first 200 from /health-alive (DATABASE_URL set)
//   idle RSS    3 s after /health-check first answers 200, before any traffic
//   peak RSS    the highest sum sampled every 50 ms while 20,000 messages are
//               posted in batches of 1,000 and one job (interval 1 s, batch
//               size 10,000) dispatches them to a sink, FETCH_INTERVAL_MS=1000
//
// Used by bench/compare.ts (the `pod` part of bench/results/latest.json) and
// runnable alone, one line of JSON per launch:
//   TEST_DATABASE_URL=postgres://… node bench/pod-memory.ts [--npm] [--messages 20000] [--repeat 3]
//     [--intake-concurrency 1] [--env KEY=VALUE]…
// `--npm` starts the pod with `npm start` (npm stays as the pod's parent
// process and is counted) instead of `node src/main.ts`; `--env` adds a
// variable to the pod's environment (NODE_OPTIONS=… to try a V8 flag).
import { type ChildProcess, spawn } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import { findFreePort } from '../src/db/embedded.ts';
import { startSink } from '../src/sink/server.ts';
import { cpuSeconds, median, processTree, sampleRss, treeRssMb } from './measure.ts';
import { call } from './support.ts';

const projectRoot = new URL('..', import.meta.url).pathname;

export interface PodMemoryOptions {
  databaseUrl: string;
  /** Messages posted (in batches of 1,000) and dispatched; default 20,000. */
  messages?: number;
  /** `node` runs `node src/main.ts`; `npm` runs `npm start` (npm stays the parent). Default node. */
  command?: 'node' | 'npm';
  /** Batches posted at once (default 1: one after the other). */
  intakeConcurrency?: number;
  /** Added to the pod's environment (only PATH and HOME are inherited). */
  env?: Record<string, string>;
}

export interface PodMemory {
  command: string;
  /** Spawn to the first 200 from /health-alive (ms). */
  coldStartToAliveMs: number;
  /** Spawn to the first 200 from /health-check (ms). */
  coldStartToHealthyMs: number;
  /** Sum over the pod's processes, 3 s after the first healthy answer, before any request but the health checks (MB). */
  idleRssMb: number;
  /** Highest sum sampled while the messages were posted (MB). */
  intakePeakRssMb: number;
  /** Highest sum sampled from the job's creation until the sink had every message (MB). */
  dispatchPeakRssMb: number;
  peakRssMb: number;
  /** Sum after the dispatch, 3 s after the sink had every message (MB). */
  afterRssMb: number;
  /** The processes counted at idle (command lines, shortened). */
  processes: string[];
  messagesPerSecond: number;
  /** CPU seconds the pod's processes used from the job's creation until the sink had every message. */
  dispatchCpuSeconds: number;
}

/**
 * Starts one pod with its defaults on `databaseUrl` (empty or migrated), a
 * sink of its own, and measures it as the file's header says; the pod is
 * stopped (SIGTERM) before this resolves.
 * @throws when the pod exits early, is not healthy within 120 s or does not deliver within 5 minutes
 */
export async function measurePodMemory(options: PodMemoryOptions): Promise<PodMemory> {
  const messages = options.messages ?? 20_000;
  const command = options.command ?? 'node';
  let delivered = new Set<string>();
  const sink = await startSink({
    onDelivery: (item) => {
      if (item.status < 300 && item.idempotencyKey) delivered.add(item.idempotencyKey);
    },
  });
  const port = await findFreePort();
  const env = {
    PATH: process.env.PATH ?? '',
    HOME: process.env.HOME ?? '/tmp',
    DATABASE_URL: options.databaseUrl,
    WEBHOOK_URL: `${sink.url}/webhook`,
    FETCH_INTERVAL_MS: '1000',
    PORT: String(port),
    ...options.env,
  };
  const began = performance.now();
  const child =
    command === 'npm'
      ? spawn('npm', ['start', '--silent'], { cwd: projectRoot, env, stdio: ['ignore', 'pipe', 'pipe'] })
      : spawn(process.execPath, ['src/main.ts'], { cwd: projectRoot, env, stdio: ['ignore', 'pipe', 'pipe'] });
  const output: string[] = [];
  for (const stream of [child.stdout, child.stderr]) stream?.on('data', (chunk) => keepTail(output, String(chunk)));
  const pid = child.pid ?? 0;
  const base = `http://127.0.0.1:${port}`;
  try {
    const coldStartToAliveMs = (await firstOk(child, `${base}/health-alive`, output)) - began;
    const coldStartToHealthyMs = (await firstOk(child, `${base}/health-check`, output)) - began;
    await sleep(3_000);
    const idleRssMb = treeRssMb(pid);
    const processes = processTree(pid).map((each) => each.command.slice(0, 80));

    const intake = sampleRss(() => processTree(pid).map((each) => each.pid), 50);
    let next = 0;
    const poster = async () => {
      for (let batch = next++; batch * 1_000 < messages; batch = next++) {
        const size = Math.min(1_000, messages - batch * 1_000);
        const items = Array.from({ length: size }, (_, i) => ({
          to: '+905551111111',
          content: `memory ${batch}/${i}`,
        }));
        await call(base, 'POST', '/messages/batch', { messages: items });
      }
    };
    await Promise.all(Array.from({ length: options.intakeConcurrency ?? 1 }, poster));
    const intakePeakRssMb = intake.stop();

    delivered = new Set();
    const dispatch = sampleRss(() => processTree(pid).map((each) => each.pid), 50);
    const dispatchBegan = performance.now();
    const cpuBefore = treeCpuSeconds(pid);
    await call(base, 'POST', '/jobs', {
      name: 'memory-sender',
      handler: 'send-messages',
      intervalSeconds: 1,
      batchSize: 10_000,
      active: true,
    });
    while (delivered.size < messages) {
      if (performance.now() - dispatchBegan > 300_000) throw new Error('pod memory: not delivered within 5 minutes');
      if (child.exitCode !== null) throw new Error(`pod memory: the pod exited\n${output.join('')}`);
      await sleep(20);
    }
    const seconds = (performance.now() - dispatchBegan) / 1000;
    const dispatchPeakRssMb = dispatch.stop();
    const dispatchCpuSeconds = treeCpuSeconds(pid) - cpuBefore;
    await sleep(3_000);
    return {
      command: command === 'npm' ? 'npm start' : 'node src/main.ts',
      coldStartToAliveMs,
      coldStartToHealthyMs,
      idleRssMb,
      intakePeakRssMb,
      dispatchPeakRssMb,
      peakRssMb: Math.max(intakePeakRssMb, dispatchPeakRssMb),
      afterRssMb: treeRssMb(pid),
      processes,
      messagesPerSecond: messages / seconds,
      dispatchCpuSeconds,
    };
  } finally {
    await stopTree(child);
    await sink.close();
  }
}

/** Median of each number over several measurements (the first one's processes). */
export function medianPodMemory(runs: PodMemory[]): PodMemory {
  const first = runs[0]!;
  const pick = (key: keyof PodMemory) => median(runs.map((run) => Number(run[key])));
  return {
    ...first,
    coldStartToAliveMs: pick('coldStartToAliveMs'),
    coldStartToHealthyMs: pick('coldStartToHealthyMs'),
    idleRssMb: pick('idleRssMb'),
    intakePeakRssMb: pick('intakePeakRssMb'),
    dispatchPeakRssMb: pick('dispatchPeakRssMb'),
    peakRssMb: pick('peakRssMb'),
    afterRssMb: pick('afterRssMb'),
    messagesPerSecond: pick('messagesPerSecond'),
    dispatchCpuSeconds: pick('dispatchCpuSeconds'),
  };
}

function treeCpuSeconds(pid: number): number {
  return processTree(pid).reduce((sum, each) => sum + cpuSeconds(each.pid), 0);
}

function keepTail(lines: string[], chunk: string): void {
  lines.push(chunk);
  if (lines.length > 200) lines.splice(0, 100);
}

/** performance.now() of the first 200 from `url`, polled every 10 ms; throws when the pod exits or after 120 s. */
async function firstOk(child: ChildProcess, url: string, output: string[]): Promise<number> {
  const deadline = performance.now() + 120_000;
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null)
      throw new Error(`pod memory: the pod exited before ${url} answered 200\n${output.join('')}`);
    if (performance.now() > deadline) throw new Error(`pod memory: no 200 from ${url} within 120 s`);
    const ok = await fetch(url).then(
      async (response) => {
        await response.arrayBuffer();
        return response.ok;
      },
      () => false,
    );
    if (ok) return performance.now();
    await sleep(10);
  }
}

/** SIGTERM to the pod (npm passes it on to its child), SIGKILL to what is left after 15 s. */
async function stopTree(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const pids = processTree(child.pid ?? 0).map((each) => each.pid);
  const exited = new Promise((resolve) => child.once('exit', resolve));
  for (const pid of pids.reverse()) signal(pid, 'SIGTERM');
  const force = setTimeout(() => {
    for (const pid of pids) signal(pid, 'SIGKILL');
  }, 15_000);
  await exited;
  clearTimeout(force);
  // npm may exit before its child has finished shutting down: wait for the rest too.
  while (pids.some((pid) => alive(pid))) await sleep(50);
}

function signal(pid: number, name: NodeJS.Signals): void {
  try {
    process.kill(pid, name);
  } catch {
    // already gone
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

if (import.meta.main) {
  const { createTestDatabase, dropTestDatabase, stopTestServer } = await import('../test/support/postgres.ts');
  const argument = (name: string, fallback: number) => {
    const at = process.argv.indexOf(name);
    return at >= 0 ? Number(process.argv[at + 1]) : fallback;
  };
  const command = process.argv.includes('--npm') ? 'npm' : 'node';
  const env = Object.fromEntries(
    process.argv.flatMap((arg, at) => (process.argv[at - 1] === '--env' ? [arg.split(/=(.*)/s).slice(0, 2)] : [])),
  );
  for (let repeat = 0; repeat < argument('--repeat', 1); repeat += 1) {
    const database = await createTestDatabase({ migrate: false });
    try {
      const result = await measurePodMemory({
        databaseUrl: database.url,
        messages: argument('--messages', 20_000),
        command,
        env,
        intakeConcurrency: argument('--intake-concurrency', 1),
      });
      console.log(JSON.stringify(result));
    } finally {
      await dropTestDatabase(database);
    }
  }
  await stopTestServer();
}
