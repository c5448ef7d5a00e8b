// The one way the tests start a child process: the service (src/main.ts or a
// test entry), npm, the sink, the dashboard tool, PostgreSQL, Redis,
// Toxiproxy, Prometheus, a bystander. Output is read in whole lines from
// stdout and stderr until 'close'; a test waits for a line or for the exit
// (with a bound), signals the process or its group, and whatever is still
// running when the test process exits is killed.
import { type ChildProcess, spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';

export const projectRoot = fileURLToPath(new URL('../..', import.meta.url));
export const mainEntry = fileURLToPath(new URL('../../src/main.ts', import.meta.url));
/** The service plus the test-only "record-run" handler; prints "ready <port>" when it serves. */
export const testPodEntry = fileURLToPath(new URL('./test-pod.ts', import.meta.url));

/** One output line: the JSON object it holds, or `{ msg: text }` when it is not a JSON object. */
export type LogRecord = Record<string, any>;

export interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** Epoch ms at which the process had exited and all its output had been read ('close'). */
  at: number;
}

export interface LaunchOptions {
  /** Name in error messages (default: the command). */
  name?: string;
  args?: readonly string[];
  /** Added to this process's environment, or to PATH alone when `inheritEnv` is false; undefined removes a variable. */
  env?: Record<string, string | undefined>;
  /** Default true. */
  inheritEnv?: boolean;
  cwd?: string;
  /** Own process group: killGroup() then reaches whatever the process started (npm's child, an embedded PostgreSQL). */
  group?: boolean;
  /** A pipe to write to (a terminal's Ctrl-C); /dev/null otherwise. */
  stdin?: boolean;
  /** Run as this user (PostgreSQL refuses to run as root). */
  user?: { uid: number; gid: number };
  /** Lines kept in `lines` and `output()` (the oldest are dropped); default 20,000. */
  keepLines?: number;
}

const running = new Set<TestProcess>();
// A test that failed half-way must not leave a service, a PostgreSQL or a browser helper behind.
process.once('exit', () => {
  for (const proc of running) proc.killGroup();
});

/** A started child process, its output as whole lines. */
export class TestProcess {
  readonly name: string;
  readonly child: ChildProcess;
  /** Every kept line of stdout and stderr, in arrival order, parsed (see LogRecord). */
  readonly lines: LogRecord[] = [];
  /** Resolves once the process has exited and its stdout and stderr are closed. */
  readonly exited: Promise<Exit>;
  /** Base URL once a service process is up (startPod). */
  url = '';
  readonly #text: string[] = [];
  readonly #keep: number;
  readonly #group: boolean;
  readonly #listeners = new Set<(line: LogRecord | undefined) => void>();
  #closed = false;

  constructor(command: string, options: LaunchOptions = {}) {
    this.name = options.name ?? command;
    this.#keep = options.keepLines ?? 20_000;
    this.#group = options.group ?? false;
    const base = (options.inheritEnv ?? true) ? process.env : { PATH: process.env.PATH ?? '' };
    this.child = spawn(command, options.args ?? [], {
      cwd: options.cwd,
      env: { ...base, ...options.env },
      stdio: [options.stdin ? 'pipe' : 'ignore', 'pipe', 'pipe'],
      detached: this.#group,
      ...options.user,
    });
    running.add(this);
    // One partial line per stream: a chunk of stderr must not land in the middle of a stdout line.
    const partials = [this.child.stdout!, this.child.stderr!].map((stream) => {
      const partial = { text: '' };
      stream.setEncoding('utf8').on('data', (chunk: string) => {
        const complete = (partial.text + chunk).split('\n');
        partial.text = complete.pop() ?? '';
        for (const line of complete) this.#add(line);
      });
      return partial;
    });
    // 'close', not 'exit': 'exit' can come before the last chunks of stdout and stderr have been read.
    this.exited = new Promise((resolve) =>
      this.child.once('close', (code, signal) => {
        for (const partial of partials) if (partial.text) this.#add(partial.text); // a last line without a newline
        this.#closed = true;
        running.delete(this);
        for (const listener of [...this.#listeners]) listener(undefined);
        resolve({ code, signal, at: Date.now() });
      }),
    );
    this.child.once('error', (error) => this.#add(`${this.name}: ${error.message}`));
  }

  get pid(): number {
    return this.child.pid ?? 0;
  }

  /** Neither exited nor killed by a signal yet. */
  get alive(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  /** The kept lines, joined with newlines (a CRLF ending counts as a line end). */
  output(): string {
    return this.#text.join('\n');
  }

  /** The last `count` lines, for failure messages. */
  tail(count = 60): string {
    return this.#text.slice(-count).join('\n');
  }

  /** Lines whose `msg` matches. */
  logged(pattern: RegExp): LogRecord[] {
    return this.lines.filter((line) => pattern.test(String(line.msg ?? '')));
  }

  /**
   * Resolves with the first line passing `test`, checked on every line as it
   * arrives; rejects when the process closes without one or after `timeoutMs`.
   */
  waitForLine(test: (line: LogRecord) => boolean, timeoutMs = 30_000): Promise<LogRecord> {
    const earlier = () => this.lines.find(test);
    return this.#wait(earlier, (line) => (test(line) ? line : undefined), 'a matching line', timeoutMs);
  }

  /** Resolves with the first match of `pattern` in output() (which may span lines); rejects as waitForLine does. */
  waitForOutput(pattern: RegExp, timeoutMs = 90_000): Promise<RegExpMatchArray> {
    const probe = () => this.output().match(pattern) ?? undefined;
    return this.#wait(probe, probe, `output matching ${pattern}`, timeoutMs);
  }

  /** Writes to stdin (launched with `stdin: true`). */
  write(text: string): void {
    this.child.stdin?.write(text);
  }

  /** Sends `signal` to the process itself, if it is still running. */
  kill(signal: NodeJS.Signals = 'SIGTERM'): void {
    if (this.alive) this.child.kill(signal);
  }

  /** SIGKILL to the process group when launched with `group`, else to the process; no error when already gone. */
  killGroup(): void {
    try {
      if (this.#group) process.kill(-this.pid, 'SIGKILL');
      else this.child.kill('SIGKILL');
    } catch {
      // already gone
    }
  }

  /**
   * SIGCONT (a frozen process cannot act on a signal), then `signal`; after
   * `graceMs` (default 15 s; Infinity waits for ever) SIGKILL to the group.
   * Resolves with the exit.
   */
  async stop(signal: NodeJS.Signals = 'SIGTERM', graceMs = 15_000): Promise<Exit> {
    if (this.alive) {
      this.kill('SIGCONT');
      this.kill(signal);
    }
    const force = Number.isFinite(graceMs) ? setTimeout(() => this.killGroup(), graceMs) : undefined;
    const exit = await this.exited;
    clearTimeout(force);
    return exit;
  }

  #add(raw: string): void {
    const text = raw.endsWith('\r') ? raw.slice(0, -1) : raw;
    let line: LogRecord = { msg: text };
    try {
      const parsed = JSON.parse(text);
      if (typeof parsed === 'object' && parsed !== null) line = parsed;
    } catch {
      // not JSON
    }
    this.#text.push(text);
    this.lines.push(line);
    if (this.lines.length > this.#keep) {
      const drop = Math.max(1, Math.floor(this.#keep / 4));
      this.lines.splice(0, drop);
      this.#text.splice(0, drop);
    }
    for (const listener of [...this.#listeners]) listener(line);
  }

  #wait<T>(
    earlier: () => T | undefined,
    onLine: (line: LogRecord) => T | undefined,
    what: string,
    timeoutMs: number,
  ): Promise<T> {
    const found = earlier();
    if (found !== undefined) return Promise.resolve(found);
    const failure = (why: string) => new Error(`${this.name}: no ${what} ${why}; last output:\n${this.tail(40)}`);
    if (this.#closed) return Promise.reject(failure('before it exited'));
    return new Promise((resolve, reject) => {
      const listener = (line: LogRecord | undefined) => {
        const value = line === undefined ? earlier() : onLine(line);
        if (value !== undefined) settle(() => resolve(value));
        else if (line === undefined) settle(() => reject(failure('before it exited')));
      };
      const timer = setTimeout(() => settle(() => reject(failure(`within ${timeoutMs} ms`))), timeoutMs);
      const settle = (finish: () => void) => {
        clearTimeout(timer);
        this.#listeners.delete(listener);
        finish();
      };
      this.#listeners.add(listener);
    });
  }
}

/** Starts `command` (see LaunchOptions). */
export function launch(command: string, options: LaunchOptions = {}): TestProcess {
  return new TestProcess(command, options);
}

/** `node <entry> ...args` with this process's Node. */
export function launchNode(entry: string, options: LaunchOptions = {}): TestProcess {
  return new TestProcess(process.execPath, { name: entry, ...options, args: [entry, ...(options.args ?? [])] });
}

/**
 * `node src/main.ts` (or `options.entry`) with only PATH from this process's
 * environment unless `inheritEnv`, plus PORT 0 and JSON logs at info, plus `env`.
 */
export function runMain(env: Record<string, string | undefined>, options: LaunchOptions & { entry?: string } = {}) {
  const { entry = mainEntry, ...rest } = options;
  return launchNode(entry, {
    inheritEnv: false,
    ...rest,
    env: { PORT: '0', LOG_FORMAT: 'json', LOG_LEVEL: 'info', ...env },
  });
}

/** The port a service announced: its "job-manager is up" log line, or a test pod's "ready <port>". */
function announcedPort(line: LogRecord): number | undefined {
  if (line.msg === 'job-manager is up' && line.port !== undefined) return Number(line.port);
  const ready = /^ready (\d+)$/.exec(String(line.msg ?? ''));
  return ready ? Number(ready[1]) : undefined;
}

/**
 * A service process named `name` (INSTANCE_ID) started as runMain does;
 * resolves once it serves HTTP, with `url` set. When it exits first or is not
 * up within `timeoutMs` (default 60 s) it is killed and the promise rejects
 * with its last output.
 */
export async function startPod(
  name: string,
  env: Record<string, string | undefined>,
  options: LaunchOptions & { entry?: string; timeoutMs?: number } = {},
): Promise<TestProcess> {
  const { timeoutMs = 60_000, ...rest } = options;
  const pod = runMain({ INSTANCE_ID: name, ...env }, { name, ...rest });
  try {
    const up = await pod.waitForLine((line) => announcedPort(line) !== undefined, timeoutMs);
    pod.url = `http://127.0.0.1:${announcedPort(up)}`;
    return pod;
  } catch (error) {
    pod.killGroup();
    await pod.exited;
    throw error;
  }
}

/** A test pod (testPodEntry) with this process's environment, warnings only, plus `env`. */
export function startTestPod(name: string, env: Record<string, string>): Promise<TestProcess> {
  return startPod(
    name,
    { LOG_LEVEL: 'warn', LOG_FORMAT: process.env.LOG_FORMAT, ...env },
    { entry: testPodEntry, inheritEnv: true },
  );
}

/** stop() on every process (SIGTERM, SIGKILL after `graceMs`); resolves when all have exited. */
export async function stopAll(processes: readonly TestProcess[], graceMs = 15_000): Promise<void> {
  await Promise.all(processes.map((proc) => proc.stop('SIGTERM', graceMs)));
}

/** An unrelated program that runs until killed (`node -e script`): a pid a stale file can name. */
export function startBystander(script = 'setInterval(() => {}, 1000)'): TestProcess {
  return launch(process.execPath, { name: 'bystander', args: ['-e', script] });
}
