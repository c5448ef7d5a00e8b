// Helpers shared by the bench scenarios (bench/run.ts, bench/growth.ts).
import { spawn } from 'node:child_process';

export function pct(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))] ?? 0;
}

export function ms(value: number): string {
  return `${value.toFixed(1)} ms`;
}

export async function call(base: string, method: string, path: string, body?: unknown): Promise<unknown> {
  const response = await fetch(`${base}${path}`, {
    method,
    headers: body === undefined ? {} : { 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (!response.ok) throw new Error(`${method} ${path}: HTTP ${response.status} ${await response.text()}`);
  return response.json();
}

/**
 * Posts `count` messages to `POST /messages/batch` in batches of 1,000, one batch after another, batch i to
 * `bases[i % bases.length]`; contents `<label> <batch>/<index>`.
 */
export async function postMessages(bases: readonly string[], count: number, label: string): Promise<void> {
  for (let batch = 0; batch * 1_000 < count; batch += 1) {
    const size = Math.min(1_000, count - batch * 1_000);
    const items = Array.from({ length: size }, (_, i) => ({ to: '+905551111111', content: `${label} ${batch}/${i}` }));
    await call(bases[batch % bases.length]!, 'POST', '/messages/batch', { messages: items });
  }
}

/** A real service process (`node src/main.ts`); resolves when it logs that it is up. */
export function startPod(name: string, env: Record<string, string>): Promise<{ url: string; stop(): Promise<void> }> {
  const child = spawn(process.execPath, [new URL('../src/main.ts', import.meta.url).pathname], {
    env: { ...process.env, ...env, PORT: '0', INSTANCE_ID: name, LOG_LEVEL: 'info' },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const exited = new Promise((resolve) => child.on('exit', resolve));
  return new Promise((resolve, reject) => {
    child.on('exit', (code) => reject(new Error(`${name} exited with ${code}`)));
    let buffer = '';
    child.stdout.on('data', (chunk: Buffer) => {
      buffer += chunk.toString();
      const up = /"port":(\d+)[^\n]*"msg":"job-manager is up"/.exec(buffer);
      if (up) {
        child.stdout.removeAllListeners('data');
        child.stdout.resume();
        resolve({
          url: `http://127.0.0.1:${up[1]}`,
          async stop() {
            if (child.exitCode === null) child.kill('SIGTERM');
            await exited;
          },
        });
      }
    });
  });
}
