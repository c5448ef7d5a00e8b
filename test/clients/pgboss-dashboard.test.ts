// The pg-boss dashboard as `npm run dashboard` starts it, in a real browser,
// against a service on DATABASE_URL and against one on its embedded database:
// the run queue, its job list and a job's detail page render without a 5xx or
// an error message (the detail page is the one a schema mismatch breaks).
import { expect } from 'chai';
import type { Page } from 'playwright-core';
import { useTestDatabase } from '../support/postgres.ts';
import {
  type BrowserSession,
  makeDataDir,
  type RunningDashboard,
  type RunningService,
  startDashboardTool,
  startService,
  useBrowser,
} from './support.ts';

const errorText =
  /requires migrations|not installed|Unexpected Server Error|Application Error|Something went wrong|Internal Server Error|Database error|\b500\b/i;

/** Waits until the seeded message-sender's first run (started at once) is in the queue. */
async function waitForARun(service: RunningService): Promise<void> {
  const deadline = Date.now() + 60_000;
  while (Date.now() < deadline) {
    const { jobs } = (await (await fetch(`${service.url}/jobs`)).json()) as { jobs: Array<{ runCount: number }> };
    if (jobs.some((job) => job.runCount > 0)) return;
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
  throw new Error('the seeded job did not run within 60 s');
}

async function visit(session: BrowserSession, url: string): Promise<string> {
  const response = await session.page.goto(url, { waitUntil: 'networkidle' });
  expect(response?.status(), url).to.be.below(400);
  // biome-ignore lint/performance/useDomNodeTextContent: the text a person sees; textContent would include inline scripts
  const text = await session.page.locator('body').innerText();
  expect(text, `error text on ${url}`).to.not.match(errorText);
  return text;
}

/** Queue page, job list (all states), first job's detail page; returns the job id opened. */
async function browseRunQueue(session: BrowserSession, dashboard: RunningDashboard): Promise<string> {
  const base = dashboard.url.replace(/\/$/, '');
  const queue = await visit(session, `${base}/queues/job-runs`);
  expect(queue).to.include('job-runs');

  const list = await visit(session, `${base}/queues/job-runs?state=all`);
  expect(list).to.not.include('No jobs found');
  const page: Page = session.page;
  const links = await page
    .locator('a[href^="/queues/job-runs/jobs/"]')
    .evaluateAll((as) => as.map((a) => a.getAttribute('href') as string));
  expect(links, 'job links in the list').to.not.be.empty;

  const detail = await visit(session, `${base}${links[0]}`);
  const jobId = links[0]!.split('/').pop()!;
  expect(detail).to.include('Job detail').and.to.include(jobId).and.to.include('message-sender');
  expect(session.serverErrors, '5xx responses').to.deep.equal([]);
  return jobId;
}

describe('pg-boss dashboard (npm run dashboard) in a real browser', function () {
  this.timeout(300_000);
  let dashboard: RunningDashboard | undefined;
  let service: RunningService | undefined;
  const openPage = useBrowser();

  afterEach(async () => {
    await dashboard?.stop();
    dashboard = undefined;
  });

  describe('on a DATABASE_URL service', () => {
    const db = useTestDatabase();
    before(async () => {
      service = await startService({ DATABASE_URL: db().url });
      await waitForARun(service);
    });
    after(async () => {
      await service?.stop();
      service = undefined;
    });

    it('prints URL and credentials; queue, job list and job detail work', async () => {
      dashboard = await startDashboardTool({ DATABASE_URL: db().url });
      expect(dashboard.banner).to.match(/URL: +http:\/\/127\.0\.0\.1:\d+\//);
      expect(dashboard.banner).to.not.include('warning');
      // Without the printed credentials the dashboard refuses.
      expect((await fetch(dashboard.url)).status).to.equal(401);
      const session = await openPage({
        httpCredentials: { username: dashboard.username, password: dashboard.password },
      });
      await browseRunQueue(session, dashboard);
    });
  });

  describe('on the embedded database (no DATABASE_URL)', () => {
    const data = makeDataDir();
    after(async () => {
      await service?.stop();
      service = undefined;
      data.remove();
    });

    it('finds the running service database by itself and shows a job', async () => {
      service = await startService({ DATABASE_URL: undefined, DATA_DIR: data.dir });
      await waitForARun(service);
      dashboard = await startDashboardTool({ DATABASE_URL: undefined, DATA_DIR: data.dir });
      expect(dashboard.banner).to.include(`embedded (${data.dir})`);
      expect(dashboard.banner).to.not.match(/postgres:\/\//); // no database password printed
      const session = await openPage({
        httpCredentials: { username: dashboard.username, password: dashboard.password },
      });
      await browseRunQueue(session, dashboard);
    });

    it('starts the embedded database itself when the service is not running', async () => {
      expect((await service!.stop()).code, 'service exit code').to.equal(0);
      service = undefined;
      dashboard = await startDashboardTool({ DATABASE_URL: undefined, DATA_DIR: data.dir });
      const session = await openPage({
        httpCredentials: { username: dashboard.username, password: dashboard.password },
      });
      await browseRunQueue(session, dashboard);
    });

    it('opens with the credentials in the printed URL', async () => {
      dashboard = await startDashboardTool({ DATABASE_URL: undefined, DATA_DIR: data.dir });
      const withCredentials = /open (http:\/\/\S+)\)/.exec(dashboard.banner)?.[1];
      expect(withCredentials).to.be.a('string');
      const session = await openPage();
      await visit(session, withCredentials!);
      // biome-ignore lint/performance/useDomNodeTextContent: the text a person sees
      expect(await session.page.locator('body').innerText()).to.include('Queues');
    });
  });
});
