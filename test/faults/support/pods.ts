import { type ChildProcess, spawn } from 'node:child_process';
import { sleep } from './cluster.ts';

const entry = new URL('./fault-pod.ts', import.meta.url).pathname;

export interface LogLine {
  level?: string;
  msg?: string;
  [key: string]: unknown;
}

/** One real service process (src/main.ts) in its own process group. */
export class ServicePod {
  readonly name: string;
  readonly process: ChildProcess;
  readonly lines: LogLine[] = [];
  readonly raw: string[] = [];
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null; at: number }>;
  url = '';

  constructor(name: string, env: Record<string, string>) {
    this.name = name;
    this.process = spawn(process.execPath, [entry], {
      env: {
        PATH: process.env.PATH ?? '',
        HOME: process.env.HOME ?? '/root',
        PORT: '0',
        INSTANCE_ID: name,
        LOG_LEVEL: 'info',
        LOG_FORMAT: 'json',
        ...env,
      },
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true,
    });
    let pending = '';
    this.process.stdout?.on('data', (chunk: Buffer) => {
      pending += chunk.toString();
      const parts = pending.split('\n');
      pending = parts.pop() ?? '';
      for (const text of parts) this.#line(text);
    });
    this.process.stderr?.on('data', (chunk: Buffer) => this.#keep(chunk.toString()));
    this.exited = new Promise((resolve) =>
      this.process.once('exit', (code, signal) => resolve({ code, signal, at: Date.now() })),
    );
  }

  get alive(): boolean {
    return this.process.exitCode === null && this.process.signalCode === null;
  }

  /** Log lines whose message matches. */
  logged(pattern: RegExp): LogLine[] {
    return this.lines.filter((line) => pattern.test(String(line.msg ?? '')));
  }

  signal(signal: NodeJS.Signals): void {
    if (this.alive) this.process.kill(signal);
  }

  /** SIGKILL the whole process group (the service and anything it started). */
  killGroup(): void {
    try {
      process.kill(-this.process.pid!, 'SIGKILL');
    } catch {
      // already gone
    }
  }

  output(): string {
    return this.raw.slice(-60).join('\n');
  }

  #line(text: string): void {
    this.#keep(text);
    try {
      const line = JSON.parse(text) as LogLine;
      this.lines.push(line);
      if (this.lines.length > 20_000) this.lines.splice(0, 5_000);
    } catch {
      // not JSON
    }
  }

  #keep(text: string): void {
    this.raw.push(text);
    if (this.raw.length > 400) this.raw.shift();
  }
}

/** Starts a pod and waits until it serves HTTP ("job-manager is up"). */
export async function startPod(name: string, env: Record<string, string>, timeoutMs = 60_000): Promise<ServicePod> {
  const pod = new ServicePod(name, env);
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const up = pod.logged(/^job-manager is up$/)[0];
    if (up) {
      pod.url = `http://127.0.0.1:${up.port}`;
      return pod;
    }
    if (!pod.alive) throw new Error(`${name} exited before it was up:\n${pod.output()}`);
    if (Date.now() > deadline) {
      pod.killGroup();
      throw new Error(`${name} was not up within ${timeoutMs} ms:\n${pod.output()}`);
    }
    await sleep(50);
  }
}

/** SIGTERM, then SIGKILL after `graceMs`; resolves when every pod has exited. */
export async function stopPods(pods: ServicePod[], graceMs = 15_000): Promise<void> {
  await Promise.all(
    pods.map(async (pod) => {
      if (!pod.alive) return;
      pod.signal('SIGCONT');
      pod.signal('SIGTERM');
      const timer = setTimeout(() => pod.killGroup(), graceMs);
      await pod.exited;
      clearTimeout(timer);
    }),
  );
}

/** JSON over HTTP with a timeout; never throws (status 0 when there was no answer). */
export async function http(
  base: string,
  method: string,
  path: string,
  body?: unknown,
  timeoutMs = 5_000,
): Promise<{ status: number; body: any; headers: Headers }> {
  try {
    const response = await fetch(`${base}${path}`, {
      method,
      headers: body === undefined ? {} : { 'content-type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: AbortSignal.timeout(timeoutMs),
    });
    const text = await response.text();
    let parsed: unknown = text;
    try {
      parsed = text ? JSON.parse(text) : undefined;
    } catch {
      // not JSON
    }
    return { status: response.status, body: parsed, headers: response.headers };
  } catch {
    return { status: 0, body: undefined, headers: new Headers() };
  }
}
