// Real processes and a real browser for the client tests (npm run test:clients):
// the service as `node src/main.ts`, the pg-boss dashboard as
// `node src/tools/dashboard-cli.ts` (what `npm run dashboard` runs), and Debian's
// chromium driven by playwright-core (never a downloaded browser).
import { type ChildProcess, spawn } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type Browser, type BrowserContext, chromium, type Page } from 'playwright-core';

export const root = fileURLToPath(new URL('../..', import.meta.url));
/** Screenshots of failed browser tests; .ci/run keeps the folder as a CI artifact. */
export const artifactsDir = join(root, 'test-artifacts');

export const chromiumPath = '/usr/bin/chromium';
export const chromiumArgs = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

export interface RealProcess {
  child: ChildProcess;
  /** stdout and stderr as received, for assertions and failure messages. */
  output: () => string;
  exited: Promise<number | null>;
  /** SIGTERM (then SIGKILL after 20 s); resolves with the exit code. */
  stop(): Promise<number | null>;
}

/** Spawns `node <entry>` in the project root with the given environment (added to this process's). */
export function spawnReal(entry: string, env: Record<string, string | undefined>): RealProcess {
  const child = spawn(process.execPath, [entry], {
    cwd: root,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const chunks: string[] = [];
  child.stdout?.setEncoding('utf8').on('data', (chunk: string) => chunks.push(chunk));
  child.stderr?.setEncoding('utf8').on('data', (chunk: string) => chunks.push(chunk));
  // 'close', not 'exit': 'exit' can come before the last output has been read.
  const exited = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
  return {
    child,
    output: () => chunks.join(''),
    exited,
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return child.exitCode;
      child.kill('SIGTERM');
      const force = setTimeout(() => child.kill('SIGKILL'), 20_000);
      const code = await exited;
      clearTimeout(force);
      return code;
    },
  };
}

/** Resolves with the first match of `pattern` in the process output; rejects on exit or after timeoutMs. */
export async function waitForOutput(proc: RealProcess, pattern: RegExp, timeoutMs = 90_000): Promise<RegExpMatchArray> {
  const deadline = Date.now() + timeoutMs;
  let exited = false;
  proc.exited.then(() => {
    exited = true;
  });
  while (Date.now() < deadline) {
    const match = proc.output().match(pattern);
    if (match) return match;
    if (exited) throw new Error(`process exited before printing ${pattern}:\n${proc.output()}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`no ${pattern} within ${timeoutMs} ms:\n${proc.output()}`);
}

export interface RunningService extends RealProcess {
  url: string;
}

/** The service as `npm start` runs it (src/main.ts), on a free port, JSON logs; resolves once it is up. */
export async function startService(env: Record<string, string | undefined>): Promise<RunningService> {
  const proc = spawnReal('src/main.ts', { PORT: '0', LOG_FORMAT: 'json', LOG_LEVEL: 'info', ...env });
  try {
    const [, port] = await waitForOutput(proc, /"port":(\d+)[^\n]*"msg":"job-manager is up"/);
    return { ...proc, url: `http://127.0.0.1:${port}` };
  } catch (error) {
    await proc.stop();
    throw error;
  }
}

export interface RunningDashboard extends RealProcess {
  url: string;
  username: string;
  password: string;
  banner: string;
}

/** `npm run dashboard` (src/tools/dashboard-cli.ts) on any free port; resolves with what it printed. */
export async function startDashboardTool(env: Record<string, string | undefined>): Promise<RunningDashboard> {
  const proc = spawnReal('src/tools/dashboard-cli.ts', { DASHBOARD_PORT: '0', ...env });
  try {
    const [banner] = await waitForOutput(proc, /pg-boss dashboard for job-manager[\s\S]*?Ctrl-C stops it\./);
    const field = (name: string) => new RegExp(`^\\s*${name}:\\s+(\\S+)`, 'm').exec(banner)?.[1];
    const url = field('URL');
    const username = field('user');
    const password = field('password');
    if (!url || !username || !password) throw new Error(`URL or credentials missing from:\n${banner}`);
    return { ...proc, url, username, password, banner };
  } catch (error) {
    await proc.stop();
    throw error;
  }
}

/** A folder the embedded PostgreSQL (run as user postgres when we are root) can enter. */
export function makeDataDir(): { dir: string; remove(): void } {
  const dir = mkdtempSync(join(tmpdir(), 'jm-clients-'));
  chmodSync(dir, 0o755);
  return { dir, remove: () => rmSync(dir, { recursive: true, force: true }) };
}

export interface BrowserSession {
  browser: Browser;
  context: BrowserContext;
  page: Page;
  /** Every request the page made to a host that is not this machine. */
  offHost: string[];
  /** Every response with a 5xx status. */
  serverErrors: string[];
  /** Console errors and uncaught page errors. */
  pageErrors: string[];
  close(): Promise<void>;
}

const loopbackHosts = new Set(['127.0.0.1', 'localhost', '[::1]', '::1']);

/**
 * Debian's chromium, headless, with a new empty profile. Requests to any other
 * host are recorded and aborted (so nothing leaves the machine even when a
 * page tries).
 */
export async function openBrowser(options: { httpCredentials?: { username: string; password: string } } = {}) {
  const profile = mkdtempSync(join(tmpdir(), 'jm-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: chromiumPath,
    args: chromiumArgs,
    headless: true,
    httpCredentials: options.httpCredentials,
    viewport: { width: 1280, height: 900 },
  });
  const browser = context.browser() as Browser;
  const offHost: string[] = [];
  const serverErrors: string[] = [];
  const pageErrors: string[] = [];
  await context.route(
    (url) => !(url.protocol === 'data:' || url.protocol === 'blob:' || loopbackHosts.has(url.hostname)),
    (route) => {
      offHost.push(route.request().url());
      return route.abort('blockedbyclient');
    },
  );
  const page = context.pages()[0] ?? (await context.newPage());
  page.on('response', (response) => {
    if (response.status() >= 500) serverErrors.push(`${response.status()} ${response.url()}`);
  });
  page.on('pageerror', (error) => pageErrors.push(String(error)));
  page.on('console', (message) => {
    if (message.type() === 'error') pageErrors.push(message.text());
  });
  return {
    browser,
    context,
    page,
    offHost,
    serverErrors,
    pageErrors,
    async close() {
      await context.close();
      rmSync(profile, { recursive: true, force: true });
    },
  } satisfies BrowserSession;
}

/**
 * Mocha afterEach body: a full-page screenshot of `page` when the test failed,
 * under test-artifacts/ (kept by CI).
 */
export async function screenshotOnFailure(ctx: Mocha.Context, page: Page | undefined): Promise<void> {
  if (!page || ctx.currentTest?.state !== 'failed') return;
  mkdirSync(artifactsDir, { recursive: true });
  const name = (ctx.currentTest.fullTitle() ?? 'test').replace(/[^\w.-]+/g, '_').slice(0, 150);
  await page.screenshot({ path: join(artifactsDir, `${name}.png`), fullPage: true }).catch(() => {});
}
