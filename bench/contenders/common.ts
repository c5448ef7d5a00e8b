// Shared by the contender processes the side-by-side bench starts (bench/compare.ts):
// each reads its settings from the environment, prints "ready" once its jobs are
// enqueued, waits for "go" on stdin, works until the orchestrator kills it.
import { createInterface } from 'node:readline';
import { Agent, request } from 'undici';

export const env = {
  databaseUrl: process.env.BENCH_CONTENDER_DATABASE_URL ?? '',
  sinkUrl: process.env.BENCH_CONTENDER_SINK_URL ?? '',
  messages: Number(process.env.BENCH_CONTENDER_MESSAGES ?? 0),
  concurrency: Number(process.env.BENCH_CONTENDER_CONCURRENCY ?? 0),
  /** A contender's variant of its settings (pg-boss: `burst`), empty for its plain form. */
  variant: process.env.BENCH_CONTENDER_VARIANT ?? '',
  /** A prefix for the Idempotency-Keys, unique per run, so the sink can tell runs apart. */
  run: process.env.BENCH_CONTENDER_RUN ?? 'run',
};

export interface BenchMessage {
  id: string;
  to: string;
  content: string;
}

/** The messages of one run: the same bodies every contender sends. */
export function benchMessages(): BenchMessage[] {
  return Array.from({ length: env.messages }, (_, i) => ({
    id: `${env.run}-${i}`,
    to: '+905551111111',
    content: `bench ${i}`,
  }));
}

const agent = new Agent({ keepAliveTimeout: 10_000, connections: 256 });

/** POSTs one message to the sink as the service does (JSON body, Idempotency-Key); throws unless 2xx. */
export async function post(message: BenchMessage): Promise<void> {
  const response = await request(env.sinkUrl, {
    method: 'POST',
    dispatcher: agent,
    headers: { 'content-type': 'application/json', 'idempotency-key': message.id },
    body: JSON.stringify({ to: message.to, content: message.content }),
  });
  await response.body.text();
  if (response.statusCode < 200 || response.statusCode > 299) throw new Error(`sink answered ${response.statusCode}`);
}

/** Prints "ready" and resolves on the orchestrator's "go". */
export function readyThenGo(): Promise<void> {
  console.log('ready');
  return new Promise((resolve) => {
    const lines = createInterface({ input: process.stdin });
    lines.on('line', (line) => {
      if (line.trim() === 'go') resolve();
    });
  });
}
