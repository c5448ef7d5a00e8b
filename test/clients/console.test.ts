// The operator console (/console) in a real browser (Debian chromium via
// playwright-core), against the service as `npm start` runs it on a real
// database: every action is pressed in the page and its effect read back from
// the database. With API_KEYS the page loads without a key, asks for one
// once, and then works. No request leaves the machine, no console error, the
// page reaches network idle, and its live updates poll every 2 s or slower.
import { mkdirSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { expect } from 'chai';
import type { Page, Request } from 'playwright-core';
import { useTestDatabase } from '../support/postgres.ts';
import { api } from '../support/service.ts';
import { artifactsDir, type BrowserSession, type RunningService, root, startService, useBrowser } from './support.ts';

const apiKey = 'console-test-key-1';
const failedTo = '+905551110002';
const excerpts = ['upstream busy, try again later', '{"error":"recipient +905551110002 is unreachable"}'] as const;

type Db = ReturnType<ReturnType<typeof useTestDatabase>>;

/** One row of messages, read straight from the database. */
async function messageRow(db: Db, id: string): Promise<{ status: string; attempts: number }> {
  const { rows } = await db.pool.query('SELECT status, attempts FROM messages WHERE id = $1', [id]);
  return rows[0];
}

async function jobStatus(db: Db, name: string): Promise<string> {
  const { rows } = await db.pool.query('SELECT status FROM jobs WHERE name = $1', [name]);
  return rows[0].status;
}

/** Waits until `read` returns `expected` (the UI's action has reached the database). */
async function until<T>(read: () => Promise<T>, expected: T, what: string): Promise<void> {
  const deadline = Date.now() + 15_000;
  let last = await read();
  while (JSON.stringify(last) !== JSON.stringify(expected)) {
    if (Date.now() > deadline)
      throw new Error(`${what}: expected ${JSON.stringify(expected)}, last ${JSON.stringify(last)}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
    last = await read();
  }
}

/**
 * The messages every test starts from, oldest first: 22 sent (more than a
 * page), a cancelled one, a failed one from two days ago, the failed one with
 * three attempts (two excerpts), and a sent one. Ids by recipient.
 */
async function seed(db: Db): Promise<Record<string, string>> {
  await db.pool.query('TRUNCATE messages CASCADE');
  await db.pool.query(`UPDATE jobs SET status = 'inactive'`);
  const insert = async (to: string, status: string, minutesAgo: number, extra: Record<string, unknown> = {}) => {
    const sent = status === 'sent';
    const { rows } = await db.pool.query(
      `INSERT INTO messages (recipient, content, status, attempts, last_error, external_message_id, sent_at, created_at, updated_at)
       VALUES ($1, $2, $3, $4, $5, $6, $7, now() - make_interval(mins => $8), now() - make_interval(mins => $9))
       RETURNING id`,
      [
        to,
        `Hello ${to}`,
        status,
        extra.attempts ?? (sent ? 1 : 0),
        extra.lastError ?? null,
        sent ? `ext-${to}` : null,
        sent ? new Date(Date.now() - (minutesAgo - 1) * 60_000) : null,
        minutesAgo,
        extra.updatedMinutesAgo ?? minutesAgo - 1,
      ],
    );
    return rows[0].id as string;
  };
  const ids: Record<string, string> = {};
  for (let i = 0; i < 22; i++) {
    const to = `+90555200${String(i).padStart(4, '0')}`;
    ids[to] = await insert(to, 'sent', 3000 - i);
  }
  ids['+905551110005'] = await insert('+905551110005', 'cancelled', 60);
  ids['+905551110006'] = await insert('+905551110006', 'failed', 2900, {
    attempts: 1,
    lastError: 'HTTP 410',
    updatedMinutesAgo: 2880,
  });
  ids[failedTo] = await insert(failedTo, 'failed', 30, { attempts: 3, lastError: 'HTTP 422' });
  await db.pool.query(
    `INSERT INTO message_attempts (message_id, attempt, started_at, duration_ms, outcome, http_status, error, response_excerpt)
     VALUES ($1, 1, now() - interval '30 minutes', 412, 'retry', 503, 'HTTP 503', $2),
            ($1, 2, now() - interval '29 minutes', 5000, 'retry', NULL, 'timeout', NULL),
            ($1, 3, now() - interval '28 minutes', 37, 'failed', 422, 'HTTP 422', $3)`,
    [ids[failedTo], excerpts[0], excerpts[1]],
  );
  ids['+905551110001'] = await insert('+905551110001', 'sent', 5);
  return ids;
}

/** Opens the console and waits for network idle and the first rows. */
async function openConsole(page: Page, url: string): Promise<void> {
  await page.goto(`${url}/console`, { waitUntil: 'networkidle' });
}

function messagesTable(page: Page) {
  return page.locator('table').filter({ has: page.getByRole('columnheader', { name: 'To' }) });
}

function jobRow(page: Page, name: string) {
  return page
    .locator('table')
    .filter({ has: page.getByRole('columnheader', { name: 'Batch size' }) })
    .getByRole('row')
    .filter({ has: page.getByRole('cell', { name, exact: true }) });
}

/** The recipients the messages table shows, top to bottom. */
async function shownRecipients(page: Page): Promise<string[]> {
  return messagesTable(page).locator('tbody tr td:nth-child(2)').allTextContents();
}

function expectClean(session: BrowserSession): void {
  expect(session.offHost, 'requests to other hosts').to.deep.equal([]);
  expect(session.serverErrors, '5xx answers').to.deep.equal([]);
  expect(session.pageErrors, 'console errors (a CSP violation or a 4xx shows here)').to.deep.equal([]);
}

describe('operator console in a real browser', function () {
  this.timeout(180_000);
  const db = useTestDatabase();
  const openPage = useBrowser();

  describe('without API_KEYS', () => {
    let service: RunningService;
    let ids: Record<string, string>;
    before(async () => {
      await seed(db());
      service = await startService({ DATABASE_URL: db().url, FETCH_INTERVAL_MS: '500' });
    });
    beforeEach(async () => {
      ids = await seed(db());
    });
    after(async () => {
      await service?.stop();
    });

    it('lands on the newest messages of every status, each recipient as written, and finds one by recipient', async () => {
      const session = await openPage();
      const { page } = session;
      await openConsole(page, service.url);
      const { rows } = await db().pool.query(
        'SELECT recipient FROM messages ORDER BY created_at DESC, id DESC LIMIT 20',
      );
      await until(
        () => shownRecipients(page),
        rows.map((row) => row.recipient),
        'landing list',
      );
      const row = messagesTable(page).getByRole('row').filter({ hasText: failedTo });
      await row.waitFor();
      expect(await row.getByRole('cell', { name: failedTo, exact: true }).count()).to.equal(1);
      const statuses = await messagesTable(page).locator('tbody tr td:nth-child(3)').allTextContents();
      expect(new Set(statuses)).to.deep.equal(new Set(['sent', 'failed', 'cancelled']));

      await page.getByLabel('Recipient').fill(failedTo);
      await page.getByRole('button', { name: 'Search', exact: true }).click();
      await until(() => shownRecipients(page), [failedTo], 'search by recipient');
      expectClean(session);
    });

    it('filters by status and pages through with nextCursor', async () => {
      const session = await openPage();
      const { page } = session;
      await openConsole(page, service.url);
      await page.getByLabel('Status').selectOption('failed');
      const failed = await db().pool.query(
        `SELECT recipient FROM messages WHERE status = 'failed' ORDER BY created_at DESC, id DESC`,
      );
      expect(failed.rows).to.have.length(2);
      await until(
        () => shownRecipients(page),
        failed.rows.map((row) => row.recipient),
        'status filter',
      );

      await page.getByLabel('Status').selectOption('');
      const all = await db().pool.query('SELECT recipient FROM messages ORDER BY created_at DESC, id DESC');
      await until(
        () => shownRecipients(page),
        all.rows.slice(0, 20).map((row) => row.recipient),
        'first page',
      );
      await page.getByRole('button', { name: 'Next page' }).click();
      await until(
        () => shownRecipients(page),
        all.rows.slice(20).map((row) => row.recipient),
        'second page',
      );
      expect(await page.getByRole('button', { name: 'Next page' }).isDisabled()).to.equal(true);
      await page.getByRole('button', { name: 'First page' }).click();
      await until(
        () => shownRecipients(page),
        all.rows.slice(0, 20).map((row) => row.recipient),
        'back to first',
      );
      expectClean(session);
    });

    it('opens a failed message by clicking its row, shows every attempt and its response excerpt as text; Retry makes it pending', async () => {
      const session = await openPage();
      const { page } = session;
      await openConsole(page, service.url);
      // Anywhere on the row: its content cell, not a link.
      await messagesTable(page)
        .getByRole('row')
        .filter({ hasText: failedTo })
        .getByRole('cell', { name: `Hello ${failedTo}` })
        .click();
      await page.waitForURL(`**/console#/messages/${ids[failedTo]}`);
      const attempts = page
        .locator('table')
        .filter({ has: page.getByRole('columnheader', { name: 'Response excerpt' }) });
      await until(() => attempts.locator('tbody tr').count(), 3, 'attempt rows');
      const cells = await attempts
        .locator('tbody tr')
        .evaluateAll((rows) => rows.map((row) => [...row.querySelectorAll('td')].map((cell) => cell.textContent)));
      expect(cells.map((row) => [row[0], row[2], row[3], row[4], row[5], row[6]])).to.deep.equal([
        ['1', 'retry', '503', '412 ms', 'HTTP 503', excerpts[0]],
        ['2', 'retry', '', '5000 ms', 'timeout', ''],
        ['3', 'failed', '422', '37 ms', 'HTTP 422', excerpts[1]],
      ]);
      // Shown, not collapsed: the excerpt's text is visible on the page as it is.
      expect(await page.getByText(excerpts[1], { exact: true }).isVisible()).to.equal(true);
      expect(await page.getByRole('button', { name: 'Cancel', exact: true }).isVisible()).to.equal(true);

      await page.getByRole('button', { name: 'Retry', exact: true }).click();
      await until(() => messageRow(db(), ids[failedTo]!), { status: 'pending', attempts: 0 }, 'after Retry');
      await page.getByRole('button', { name: 'Retry', exact: true }).waitFor({ state: 'detached' });
      await page.waitForLoadState('networkidle');
      expectClean(session);
    });

    it('Cancel on a pending message cancels it; a sent one offers neither button', async () => {
      const created = await api(service.url, 'POST', '/messages', {
        to: '+905551110003',
        content: 'cancel me',
        sendAt: new Date(Date.now() + 3_600_000).toISOString(),
      });
      expect(created.status).to.equal(201);
      const session = await openPage();
      const { page } = session;
      await openConsole(page, service.url);
      await messagesTable(page).getByRole('row').filter({ hasText: '+905551110003' }).click();
      await page.getByRole('button', { name: 'Cancel', exact: true }).click();
      await until(() => messageRow(db(), created.body.id), { status: 'cancelled', attempts: 0 }, 'after Cancel');
      // Cancelled: Retry is offered, Cancel is not.
      await page.getByRole('button', { name: 'Retry', exact: true }).waitFor();
      expect(await page.getByRole('button', { name: 'Cancel', exact: true }).count()).to.equal(0);

      await page.getByRole('link', { name: 'Messages' }).first().click();
      await messagesTable(page).getByRole('row').filter({ hasText: '+905551110001' }).click();
      await page.getByText('ext-+905551110001').waitFor();
      expect(await page.getByRole('button', { name: 'Retry', exact: true }).count()).to.equal(0);
      expect(await page.getByRole('button', { name: 'Cancel', exact: true }).count()).to.equal(0);
      expectClean(session);
    });

    it('Retry failed since a time retries only what failed since then; without a time, every failed message', async () => {
      const session = await openPage();
      const { page } = session;
      await openConsole(page, service.url);
      const since = new Date(Date.now() - 3 * 3_600_000);
      const local = new Date(since.getTime() - since.getTimezoneOffset() * 60_000).toISOString().slice(0, 19);
      await page.getByLabel('Failed since').fill(local);
      await page.getByRole('button', { name: 'Retry failed', exact: true }).click();
      await page.getByText('1 failed message is pending again.').waitFor();
      expect(await messageRow(db(), ids[failedTo]!)).to.deep.equal({ status: 'pending', attempts: 0 });
      expect(await messageRow(db(), ids['+905551110006']!)).to.deep.equal({ status: 'failed', attempts: 1 });

      await page.getByLabel('Failed since').fill('');
      await page.getByRole('button', { name: 'Retry failed', exact: true }).click();
      const failed = async () =>
        (await db().pool.query(`SELECT count(*)::int AS n FROM messages WHERE status = 'failed'`)).rows[0].n;
      await until(failed, 0, 'after Retry failed without a time');
      await page.getByText('1 failed message is pending again.').waitFor();
      expectClean(session);
    });

    it('Stop and Start on a job row switch that job only, shown in its row', async () => {
      expect(
        (
          await api(service.url, 'POST', '/jobs', {
            name: 'nightly-digest',
            handler: 'send-messages',
            intervalSeconds: 3600,
            batchSize: 50,
            active: true,
          })
        ).status,
      ).to.equal(201);
      try {
        const session = await openPage();
        const { page } = session;
        await openConsole(page, service.url);
        await page.getByRole('link', { name: 'Jobs' }).click();
        const row = jobRow(page, 'nightly-digest');
        const headers = await page
          .locator('table')
          .filter({ has: page.getByRole('columnheader', { name: 'Batch size' }) })
          .locator('th')
          .allTextContents();
        expect(headers).to.include.members(['Status', 'Interval', 'Batch size', 'Last run', 'Next run']);
        expect(await row.locator('td').nth(2).textContent()).to.equal('3600 s');
        expect(await row.locator('td').nth(3).textContent()).to.equal('50');

        await row.getByRole('button', { name: 'Stop', exact: true }).click();
        await until(() => jobStatus(db(), 'nightly-digest'), 'inactive', 'after Stop');
        await row.getByRole('cell', { name: 'inactive', exact: true }).waitFor();
        expect(await jobStatus(db(), 'message-sender')).to.equal('inactive');

        await jobRow(page, 'message-sender').getByRole('button', { name: 'Start', exact: true }).click();
        await until(async () => (await jobStatus(db(), 'message-sender')) !== 'inactive', true, 'after Start');
        expect(await jobStatus(db(), 'nightly-digest')).to.equal('inactive');
        await jobRow(page, 'message-sender').getByRole('button', { name: 'Stop', exact: true }).click();
        await until(() => jobStatus(db(), 'message-sender'), 'inactive', 'after Stop on message-sender');
        expectClean(session);
      } finally {
        await db().pool.query(`DELETE FROM jobs WHERE name = 'nightly-digest'`);
      }
    });

    it('draws the live chart from polls at least 2 s apart, reaching network idle between them', async () => {
      // Three deliveries within the last minute (and one 4 minutes ago, seeded), two messages waiting.
      await db().pool.query(
        `INSERT INTO messages (recipient, content, status, attempts, external_message_id, sent_at, created_at)
         SELECT '+90555300000' || n, 'recent', 'sent', 1, 'ext-recent-' || n, now() - n * interval '10 seconds', now() - interval '2 minutes'
         FROM generate_series(1, 3) AS n`,
      );
      for (const to of ['+905553100001', '+905553100002']) {
        const sendAt = new Date(Date.now() + 3_600_000).toISOString();
        expect((await api(service.url, 'POST', '/messages', { to, content: 'later', sendAt })).status).to.equal(201);
      }
      const session = await openPage();
      const { page } = session;
      const polls: number[] = [];
      page.on('request', (request: Request) => {
        if (new URL(request.url()).pathname === '/metrics') polls.push(Date.now());
      });
      await openConsole(page, service.url);
      await page.locator('#live svg polyline.backlog').waitFor({ state: 'attached' });
      await page.waitForRequest((request) => new URL(request.url()).pathname === '/metrics');
      await page.waitForRequest((request) => new URL(request.url()).pathname === '/metrics');
      await page.waitForLoadState('networkidle');
      expect(polls.length).to.be.at.least(3);
      for (let i = 1; i < polls.length; i++) expect(polls[i]! - polls[i - 1]!, `gap ${i}`).to.be.at.least(2_000);
      const { rows } = await db().pool.query(`SELECT count(*)::int AS n FROM messages WHERE status = 'pending'`);
      expect(rows[0].n).to.equal(2);
      // The gauge is cached for 5 s, so the backlog reaches 2 by a later poll.
      await until(
        () => page.locator('#live-figures').textContent(),
        'Delivered in the last minute: 3 · Backlog: 2 pending',
        'figures',
      );
      expectClean(session);
    });

    it('screenshots the landing page and a failed message (CONSOLE_SCREENSHOTS=docs writes the ones docs/ shows)', async () => {
      const session = await openPage();
      const { page } = session;
      const folder = process.env.CONSOLE_SCREENSHOTS === 'docs' ? join(root, 'docs/images') : artifactsDir;
      mkdirSync(folder, { recursive: true });
      // Ten minutes of deliveries (a burst in the middle) and a backlog, so the chart has something to show.
      await db().pool.query(
        `INSERT INTO messages (recipient, content, status, attempts, external_message_id, sent_at, created_at)
         SELECT '+9055540' || lpad(n::text, 5, '0'), 'Your code is ' || (1000 + n), 'sent', 1, 'ext-' || n,
                now() - (n * 3 + CASE WHEN n BETWEEN 60 AND 120 THEN 0 ELSE n END) * interval '1 second',
                now() - (n * 3 + CASE WHEN n BETWEEN 60 AND 120 THEN 0 ELSE n END + 2) * interval '1 second'
         FROM generate_series(1, 200) AS n`,
      );
      await db().pool.query(
        `INSERT INTO messages (recipient, content, next_attempt_at, send_at, created_at)
         SELECT '+9055550' || lpad(n::text, 5, '0'), 'Reminder ' || n, now() + interval '1 hour', now() + interval '1 hour',
                now() - interval '20 minutes' + n * interval '1 second'
         FROM generate_series(1, 40) AS n`,
      );
      await openConsole(page, service.url);
      await page.locator('#live svg').waitFor();
      if (folder !== artifactsDir) {
        // A few backlog samples for the picture in the docs.
        for (let i = 0; i < 3; i++) await page.waitForRequest((request) => request.url().endsWith('/metrics'));
        await page.waitForLoadState('networkidle');
      }
      await page.screenshot({ path: join(folder, 'console-landing.png'), fullPage: true });
      await page.getByLabel('Recipient').fill(failedTo);
      await page.getByRole('button', { name: 'Search', exact: true }).click();
      await until(() => shownRecipients(page), [failedTo], 'search by recipient');
      await messagesTable(page).getByRole('row').filter({ hasText: failedTo }).click();
      await page.getByText(excerpts[1], { exact: true }).waitFor();
      await page.waitForLoadState('networkidle');
      await page.screenshot({ path: join(folder, 'console-message.png'), fullPage: true });
      expectClean(session);
    });
  });

  describe('against a real webhook (attempts recorded by delivery, not seeded)', () => {
    const refused = '+905557770001';
    const flaky = '+905557770002';
    const refusal = `{"error":"recipient ${refused} is blocked"}`;
    let webhook: Server;
    let service: RunningService;
    const calls = new Map<string, number>();
    before(async () => {
      // Refuses one recipient for good (422), answers 503 twice to another and then accepts it.
      webhook = createServer((request, response) => {
        let body = '';
        request.on('data', (chunk) => {
          body += chunk;
        });
        request.on('end', () => {
          const { to } = JSON.parse(body) as { to: string };
          const seen = (calls.get(to) ?? 0) + 1;
          calls.set(to, seen);
          if (to === refused) response.writeHead(422, { 'content-type': 'application/json' }).end(refusal);
          else if (to === flaky && seen <= 2)
            response.writeHead(503, { 'content-type': 'text/plain' }).end('busy, try later');
          else
            response
              .writeHead(202, { 'content-type': 'application/json' })
              .end(JSON.stringify({ messageId: `hook-${seen}-${to}` }));
        });
      });
      await new Promise<void>((resolve) => webhook.listen(0, '127.0.0.1', resolve));
      await db().pool.query('TRUNCATE messages CASCADE');
      await db().pool.query(`UPDATE jobs SET status = 'inactive', interval_seconds = 1`);
      service = await startService({
        DATABASE_URL: db().url,
        FETCH_INTERVAL_MS: '500',
        WEBHOOK_URL: `http://127.0.0.1:${(webhook.address() as AddressInfo).port}/hook`,
        WEBHOOK_RETRY_BASE_MS: '200',
        WEBHOOK_RETRY_MAX_MS: '400',
      });
    });
    after(async () => {
      await service?.stop();
      await new Promise((resolve) => webhook?.close(resolve));
    });

    it('Start delivers, Stop stops; the refused message shows the webhook answer as its excerpt, and Retry makes it pending', async () => {
      const ids: Record<string, string> = {};
      for (const to of [refused, flaky]) {
        const created = await api(service.url, 'POST', '/messages', { to, content: `Hello ${to}` });
        expect(created.status).to.equal(201);
        ids[to] = created.body.id;
      }
      const session = await openPage();
      const { page } = session;
      await openConsole(page, service.url);
      await jobRow(page, 'message-sender').getByRole('button', { name: 'Start', exact: true }).click();
      await until(() => messageRow(db(), ids[refused]!), { status: 'failed', attempts: 1 }, 'refused message');
      await until(async () => (await messageRow(db(), ids[flaky]!)).status, 'sent', 'flaky message');
      await jobRow(page, 'message-sender').getByRole('button', { name: 'Stop', exact: true }).click();
      await until(() => jobStatus(db(), 'message-sender'), 'inactive', 'after Stop');

      await page.goto(`${service.url}/console`, { waitUntil: 'networkidle' });
      await messagesTable(page).getByRole('row').filter({ hasText: refused }).click();
      await page.getByText(refusal, { exact: true }).waitFor();
      await page.getByRole('button', { name: 'Retry', exact: true }).click();
      await until(() => messageRow(db(), ids[refused]!), { status: 'pending', attempts: 0 }, 'after Retry');

      await page.getByRole('link', { name: 'Messages' }).first().click();
      await messagesTable(page).getByRole('row').filter({ hasText: flaky }).click();
      const attempts = page
        .locator('table')
        .filter({ has: page.getByRole('columnheader', { name: 'Response excerpt' }) });
      await until(
        () => attempts.locator('tbody tr td:nth-child(3)').allTextContents(),
        ['retry', 'retry', 'delivered'],
        'flaky attempts',
      );
      expect(await attempts.locator('tbody tr td:nth-child(4)').allTextContents()).to.deep.equal(['503', '503', '202']);
      expect(await attempts.locator('tbody tr td:nth-child(7)').allTextContents()).to.deep.equal([
        'busy, try later',
        'busy, try later',
        JSON.stringify({ messageId: `hook-3-${flaky}` }),
      ]);
      expectClean(session);
    });
  });

  describe('with API_KEYS', () => {
    let service: RunningService;
    let ids: Record<string, string>;
    before(async () => {
      ids = await seed(db());
      service = await startService({ DATABASE_URL: db().url, API_KEYS: `${apiKey},another-key` });
    });
    after(async () => {
      await service?.stop();
    });

    it('loads without a key, asks for one once (kept for the tab), sends it as X-API-Key, and works', async () => {
      const session = await openPage();
      const { page } = session;
      const apiCalls: Request[] = [];
      page.on('request', (request) => {
        if (/^\/(jobs|messages)/.test(new URL(request.url()).pathname)) apiCalls.push(request);
      });
      const response = await page.goto(`${service.url}/console`, { waitUntil: 'networkidle' });
      expect(response?.status()).to.equal(200);
      const keyField = page.getByLabel('API key');
      await keyField.waitFor();
      expect(apiCalls, 'no API call before a key is given').to.deep.equal([]);

      await keyField.fill(apiKey);
      await page.getByRole('button', { name: 'Use key' }).click();
      await messagesTable(page).getByRole('row').filter({ hasText: failedTo }).waitFor();
      expect(apiCalls.length).to.be.greaterThan(0);
      for (const call of apiCalls) expect(await call.headerValue('x-api-key'), call.url()).to.equal(apiKey);

      await messagesTable(page).getByRole('row').filter({ hasText: failedTo }).click();
      await page.getByText(excerpts[1], { exact: true }).waitFor();
      await page.getByRole('button', { name: 'Retry', exact: true }).click();
      await until(() => messageRow(db(), ids[failedTo]!), { status: 'pending', attempts: 0 }, 'after Retry');

      // Asked once: a reload in the same tab goes straight to the data.
      await page.goto(`${service.url}/console#jobs`, { waitUntil: 'networkidle' });
      expect(await keyField.isVisible()).to.equal(false);
      await jobRow(page, 'message-sender').getByRole('button', { name: 'Start', exact: true }).click();
      await until(async () => (await jobStatus(db(), 'message-sender')) !== 'inactive', true, 'after Start');
      await jobRow(page, 'message-sender').getByRole('button', { name: 'Stop', exact: true }).click();
      await until(() => jobStatus(db(), 'message-sender'), 'inactive', 'after Stop');
      expectClean(session);
    });

    it('a wrong key is refused with a message and the key is asked for again', async () => {
      const session = await openPage();
      const { page } = session;
      await page.goto(`${service.url}/console`, { waitUntil: 'networkidle' });
      await page.getByLabel('API key').fill('not-a-key');
      await page.getByRole('button', { name: 'Use key' }).click();
      await page.getByText('The service did not accept that key; enter another.').waitFor();
      expect(await page.evaluate(() => sessionStorage.getItem('job-manager.apiKey'))).to.equal(null);
      expect(await messagesTable(page).isVisible()).to.equal(false);
      // The refused call is the only console error: chromium logs the 401 it got.
      expect(session.pageErrors).to.have.length(1);
      expect(session.pageErrors[0]).to.match(/401/);
    });
  });
});
