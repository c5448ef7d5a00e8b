import { type ChildProcess, spawn } from 'node:child_process';

const podEntry = new URL('./test-pod.ts', import.meta.url).pathname;

export interface Pod {
  name: string;
  url: string;
  process: ChildProcess;
  output: string[];
  exited: Promise<number | null>;
  kill(signal?: NodeJS.Signals): void;
}

/** Starts a real service process (test-pod.ts) and waits until it serves HTTP. */
export function startPod(name: string, env: Record<string, string>): Promise<Pod> {
  const child = spawn(process.execPath, [podEntry], {
    env: { ...process.env, PORT: '0', LOG_LEVEL: 'warn', INSTANCE_ID: name, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const output: string[] = [];
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${name} did not start:\n${output.join('')}`)), 60_000);
    let stdout: string | undefined = ''; // until "ready" was seen
    const onData = (chunk: string) => {
      output.push(chunk);
      if (output.length > 500) output.shift();
      if (stdout === undefined) return;
      // The whole line, newline included: a chunk may end inside "ready <port>".
      stdout += chunk;
      const ready = /^ready (\d+)\n/m.exec(stdout);
      if (ready) {
        stdout = undefined;
        clearTimeout(timer);
        resolve({
          name,
          url: `http://127.0.0.1:${ready[1]}`,
          process: child,
          output,
          exited,
          kill: (signal = 'SIGTERM') => child.kill(signal),
        });
      }
    };
    child.stdout.setEncoding('utf8').on('data', onData);
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => output.push(chunk));
    exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`${name} exited with ${code} before it was ready:\n${output.join('')}`));
    });
  });
}

export async function stopPods(pods: Pod[]): Promise<void> {
  await Promise.all(
    pods.map(async (pod) => {
      if (pod.process.exitCode !== null || pod.process.signalCode !== null) return;
      pod.kill('SIGTERM');
      const timeout = setTimeout(() => pod.kill('SIGKILL'), 15_000);
      await pod.exited;
      clearTimeout(timeout);
    }),
  );
}
