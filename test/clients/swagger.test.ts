// Swagger UI in a real browser (Debian chromium via playwright-core): the
// three URLs show this API (title and every operation of openapi.yaml), Try it
// out answers 200, Authorize with an API key works when API_KEYS is set, and
// no request leaves the machine.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { expect } from 'chai';
import type { Page } from 'playwright-core';
import { parse } from 'yaml';
import { useTestDatabase } from '../support/postgres.ts';
import { type RunningService, root, startService, useBrowser } from './support.ts';

const spec = parse(readFileSync(join(root, 'openapi.yaml'), 'utf8'));
const httpMethods = new Set(['get', 'put', 'post', 'delete', 'options', 'head', 'patch', 'trace']);
const operationCount = Object.values(spec.paths as Record<string, Record<string, unknown>>).reduce(
  (count, item) => count + Object.keys(item).filter((key) => httpMethods.has(key)).length,
  0,
);
const apiKey = 'clients-test-key-1';

async function openSwagger(page: Page, url: string): Promise<void> {
  await page.goto(url, { waitUntil: 'networkidle' });
  await page.locator('.opblock').first().waitFor({ timeout: 30_000 });
}

/** Expands GET /jobs, presses Try it out (once) and Execute; returns the status the page shows and the request headers. */
async function tryListJobs(page: Page): Promise<{ shown: string; status: number; headers: Record<string, string> }> {
  const block = page.locator('#operations-jobs-listJobs');
  if (!(await block.locator('.try-out').isVisible()) || !(await block.locator('.execute').isVisible())) {
    if (!(await block.locator('.opblock-body').isVisible())) await block.locator('.opblock-summary').click();
    const tryOut = block.locator('button.try-out__btn');
    if ((await tryOut.textContent())?.includes('Try it out')) await tryOut.click();
  }
  const [response] = await Promise.all([
    page.waitForResponse((r) => new URL(r.url()).pathname === '/jobs' && r.request().method() === 'GET'),
    block.locator('button.execute').click(),
  ]);
  const shown = block.locator('.live-responses-table .response .response-col_status').first();
  await shown.waitFor();
  return {
    shown: (await shown.textContent())?.trim() ?? '',
    status: response.status(),
    headers: await response.request().allHeaders(),
  };
}

describe('Swagger UI in a real browser', function () {
  this.timeout(180_000);
  const db = useTestDatabase();
  const openPage = useBrowser();

  describe('without API_KEYS', () => {
    let service: RunningService;
    before(async () => {
      service = await startService({ DATABASE_URL: db().url });
    });
    after(async () => {
      await service?.stop();
    });

    for (const path of ['/swagger/index.html', '/swagger', '/swagger/']) {
      it(`${path} shows this API: its title and all ${operationCount} operations, nothing from elsewhere`, async () => {
        const session = await openPage();
        const { page } = session;
        await openSwagger(page, `${service.url}${path}`);
        expect(new URL(page.url()).pathname).to.equal('/swagger/index.html');
        expect(await page.title()).to.equal(spec.info.title);
        expect(await page.locator('.information-container .title').textContent()).to.include(spec.info.title);
        expect(await page.locator('.opblock').count()).to.equal(operationCount);
        expect(await page.content()).to.not.include('Petstore');
        expect(await page.locator('.errors-wrapper').count(), 'Swagger UI reports spec errors').to.equal(0);
        expect(session.offHost, 'requests to other hosts').to.deep.equal([]);
        expect(session.serverErrors).to.deep.equal([]);
        expect(session.pageErrors, 'console errors (a CSP violation shows here)').to.deep.equal([]);
      });
    }

    it('Try it out on GET /jobs gets 200 with the job list', async () => {
      const session = await openPage();
      const { page } = session;
      await openSwagger(page, `${service.url}/swagger/index.html`);
      const result = await tryListJobs(page);
      expect(result.status).to.equal(200);
      expect(result.shown).to.equal('200');
      const body = await page
        .locator('#operations-jobs-listJobs .live-responses-table .response-col_description pre')
        .first()
        .textContent();
      expect(body).to.include('message-sender');
      expect(session.offHost).to.deep.equal([]);
      expect(session.pageErrors).to.deep.equal([]);
    });
  });

  describe('with API_KEYS', () => {
    let service: RunningService;
    before(async () => {
      service = await startService({ DATABASE_URL: db().url, API_KEYS: `${apiKey},another-key` });
    });
    after(async () => {
      await service?.stop();
    });

    it('Try it out without authorizing gets 401; after Authorize with X-API-Key, 200', async () => {
      const session = await openPage();
      const { page } = session;
      await openSwagger(page, `${service.url}/swagger/index.html`);

      const anonymous = await tryListJobs(page);
      expect(anonymous.status).to.equal(401);
      expect(anonymous.shown).to.equal('401');

      await page.locator('.auth-wrapper button.authorize').click();
      const scheme = page.locator('.auth-container').filter({ hasText: 'apiKeyHeader' });
      await scheme.locator('input').fill(apiKey);
      await scheme.locator('button.authorize').click();
      await page.locator('.auth-btn-wrapper button.btn-done, button.close-modal').first().click();

      const authorized = await tryListJobs(page);
      expect(authorized.headers['x-api-key']).to.equal(apiKey);
      expect(authorized.status).to.equal(200);
      expect(authorized.shown).to.equal('200');
      expect(session.offHost).to.deep.equal([]);
    });

    it('Authorize with the bearer scheme works too', async () => {
      const session = await openPage();
      const { page } = session;
      await openSwagger(page, `${service.url}/swagger/`);
      await page.locator('.auth-wrapper button.authorize').click();
      const scheme = page.locator('.auth-container').filter({ hasText: 'bearerAuth' });
      await scheme.locator('input').fill(apiKey);
      await scheme.locator('button.authorize').click();
      await page.locator('.auth-btn-wrapper button.btn-done, button.close-modal').first().click();

      const authorized = await tryListJobs(page);
      expect(authorized.headers.authorization).to.equal(`Bearer ${apiKey}`);
      expect(authorized.status).to.equal(200);
      expect(authorized.shown).to.equal('200');
    });
  });
});
