// `node src/main.ts` (or another entry point) as a real child process, its
// JSON log lines collected as they arrive.
import { type ChildProcess, spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';

export const mainPath = fileURLToPath(new URL('../../src/main.ts', import.meta.url));

export interface Running {
  child: ChildProcess;
  lines: Array<Record<string, any>>;
  output: () => string;
  exited: Promise<number | null>;
}

/** Starts `entry` with a minimal environment (PATH, PORT 0, JSON logs at info) plus `env`. */
export function runMain(env: Record<string, string>, entry: string = mainPath): Running {
  const child = spawn(process.execPath, [entry], {
    env: { PATH: process.env.PATH ?? '', PORT: '0', LOG_FORMAT: 'json', LOG_LEVEL: 'info', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let raw = '';
  let partial = '';
  const lines: Array<Record<string, any>> = [];
  const onData = (chunk: Buffer) => {
    raw += chunk.toString();
    partial += chunk.toString();
    const complete = partial.split('\n');
    partial = complete.pop() ?? '';
    for (const line of complete) {
      try {
        lines.push(JSON.parse(line));
      } catch {
        lines.push({ msg: line });
      }
    }
  };
  child.stdout!.on('data', onData);
  child.stderr!.on('data', onData);
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return { child, lines, output: () => raw, exited };
}

/** Resolves with the first log line passing `test` (checked on every line as it arrives). */
export async function lineMatching(run: Running, test: (line: Record<string, any>) => boolean, timeoutMs = 30_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const found = run.lines.find(test);
    if (found) return found;
    if (run.child.exitCode !== null || Date.now() > deadline) {
      throw new Error(`no matching log line; output:\n${run.output().slice(-3000)}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}
