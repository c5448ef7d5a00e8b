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
  const lines: Array<Record<string, any>> = [];
  const parse = (line: string) => {
    try {
      lines.push(JSON.parse(line));
    } catch {
      lines.push({ msg: line });
    }
  };
  // One partial line per stream: a chunk of stderr must not land in the middle of a stdout line.
  const partials = new Map<NodeJS.ReadableStream, string>();
  for (const stream of [child.stdout!, child.stderr!]) {
    partials.set(stream, '');
    stream.setEncoding('utf8').on('data', (chunk: string) => {
      raw += chunk;
      const complete = (partials.get(stream) + chunk).split('\n');
      partials.set(stream, complete.pop() ?? '');
      for (const line of complete) parse(line);
    });
  }
  // 'close', not 'exit': 'exit' can come before the last chunks of stdout and stderr have been read,
  // and callers assert on the output once the process has exited.
  const exited = new Promise<number | null>((resolve) =>
    child.once('close', (code) => {
      for (const partial of partials.values()) if (partial) parse(partial); // a last line without a newline
      resolve(code);
    }),
  );
  return { child, lines, output: () => raw, exited };
}

/** Resolves with the first log line passing `test` (checked on every line as it arrives). */
export async function lineMatching(run: Running, test: (line: Record<string, any>) => boolean, timeoutMs = 30_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const found = run.lines.find(test);
    if (found) return found;
    if (run.child.exitCode !== null || run.child.signalCode !== null) {
      // Exited: its last lines may still be in the pipe; `exited` resolves once they are read.
      await run.exited;
      const last = run.lines.find(test);
      if (last) return last;
      throw new Error(`no matching log line before the process exited; output:\n${run.output().slice(-3000)}`);
    }
    if (Date.now() > deadline) {
      throw new Error(`no matching log line within ${timeoutMs} ms; output:\n${run.output().slice(-3000)}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}
