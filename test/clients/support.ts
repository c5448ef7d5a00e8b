// Real processes and a real browser for the client tests (npm run test:clients):
// the service as `node src/main.ts`, the pg-boss dashboard as
// `node src/tools/dashboard-cli.ts` (what `npm run dashboard` runs), and Debian's
// chromium driven by playwright-core (never a downloaded browser).
import { chmodSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type Browser, type BrowserContext, chromium, type Page } from 'playwright-core';
import { launchNode, projectRoot, startPod, type TestProcess } from '../support/processes.ts';

export const root = projectRoot;
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

export interface RunningService extends TestProcess {
  url: string;
}

/** The service as `npm start` runs it (src/main.ts) in the project root, on a free port, JSON logs; resolves once it is up. */
export function startService(env: Record<string, string | undefined>): Promise<RunningService> {
  // INSTANCE_ID as npm start would have it: this environment's, else the service's hostname-pid default.
  return startPod(
    'service',
    { INSTANCE_ID: process.env.INSTANCE_ID, ...env },
    { inheritEnv: true, cwd: root, timeoutMs: 90_000 },
  );
}

export interface RunningDashboard extends TestProcess {
  url: string;
  username: string;
  password: string;
  banner: string;
}

/** `npm run dashboard` (src/tools/dashboard-cli.ts) on any free port; resolves with what it printed. */
export async function startDashboardTool(env: Record<string, string | undefined>): Promise<RunningDashboard> {
  const proc = launchNode(join(root, 'src/tools/dashboard-cli.ts'), {
    cwd: root,
    env: { DASHBOARD_PORT: '0', ...env },
  });
  try {
    const [banner] = await proc.waitForOutput(/pg-boss dashboard for job-manager[\s\S]*?Ctrl-C stops it\./);
    const field = (name: string) => new RegExp(`^\\s*${name}:\\s+(\\S+)`, 'm').exec(banner)?.[1];
    const url = field('URL');
    const username = field('user');
    const password = field('password');
    if (!url || !username || !password) throw new Error(`URL or credentials missing from:\n${banner}`);
    return Object.assign(proc, { url, username, password, banner });
  } catch (error) {
    await proc.stop('SIGTERM', 20_000);
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

let running: Promise<Browser> | undefined;

/** Debian's chromium, headless: one per test file (closeBrowser() in the file's `after`). */
function sharedBrowser(): Promise<Browser> {
  running ??= chromium.launch({ executablePath: chromiumPath, args: chromiumArgs, headless: true });
  return running;
}

/** Closes the file's chromium, if one was started. */
export async function closeBrowser(): Promise<void> {
  const browser = running;
  running = undefined;
  await (await browser)?.close();
}

/**
 * A page in a new browser context of the file's chromium: an empty profile
 * of its own (no cookies, storage or credentials from another test). Requests
 * to any other host are recorded and aborted (so nothing leaves the machine
 * even when a page tries).
 */
export async function openBrowser(options: { httpCredentials?: { username: string; password: string } } = {}) {
  const browser = await sharedBrowser();
  const context = await browser.newContext({
    httpCredentials: options.httpCredentials,
    viewport: { width: 1280, height: 900 },
  });
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
  const page = await context.newPage();
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
    },
  } satisfies BrowserSession;
}

/**
 * Call inside a Mocha `describe`: registers the hooks every browser test file
 * needs (after each test a screenshot when it failed, then its session closed;
 * after the file, chromium closed) and returns `open`, which opens a session
 * (see `openBrowser`) that those hooks clean up.
 */
export function useBrowser(): (options?: Parameters<typeof openBrowser>[0]) => Promise<BrowserSession> {
  let session: BrowserSession | undefined;
  after(closeBrowser);
  afterEach(async function () {
    await screenshotOnFailure(this, session?.page);
    await session?.close();
    session = undefined;
  });
  return async (options) => {
    await session?.close();
    session = await openBrowser(options);
    return session;
  };
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
