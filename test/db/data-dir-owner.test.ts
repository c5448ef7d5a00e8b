// One service per DATA_DIR (tester's report, point 1): a second `npm start` in
// the same folder used to SIGINT the first one's embedded PostgreSQL and then
// die on EADDRINUSE, leaving the first answering 503 for good. Now it fails at
// once with exit 75 and a message naming the owner, and the first keeps
// running; the dashboard tool still relays to the running service. Real
// processes, real embedded PostgreSQL. (A server orphaned by a SIGKILLed
// service is still stopped: test/db/embedded.test.ts.)
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { expect } from 'chai';
import {
  DataDirInUseError,
  type DataDirLock,
  lockDataDir,
  lockFileName,
  processStartTime,
} from '../../src/db/data-dir-lock.ts';
import { runMain, startBystander, type TestProcess } from '../support/processes.ts';

const dashboardCli = fileURLToPath(new URL('../../src/tools/dashboard-cli.ts', import.meta.url));

describe('one service per DATA_DIR (embedded PostgreSQL)', function () {
  this.timeout(120_000);
  let dir: string;
  let first: TestProcess;
  let port: number;
  const others: TestProcess[] = [];

  const postmasterPid = async () => Number((await readFile(join(dir, 'pg', 'postmaster.pid'), 'utf8')).split('\n')[0]);
  const isAlive = (pid: number) => {
    try {
      process.kill(pid, 0);
      return true;
    } catch {
      return false;
    }
  };

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'jm-data-dir-'));
    first = runMain({ DATA_DIR: dir });
    port = (await first.waitForLine((line) => line.msg === 'job-manager is up', 90_000)).port;
  });
  afterEach(async () => {
    for (const run of others.splice(0)) {
      if (run.child.exitCode === null) run.child.kill('SIGKILL');
      await run.exited;
    }
  });
  after(async () => {
    if (first.child.exitCode === null) first.child.kill('SIGKILL');
    await first.exited;
    await rm(dir, { recursive: true, force: true });
  });

  it('refuses a second service on the same DATA_DIR with exit 75, leaving the first one and its database alone', async () => {
    const postgres = await postmasterPid();
    const second = runMain({ DATA_DIR: dir });
    others.push(second);
    expect((await second.exited).code).to.equal(75);
    const fatal = second.lines.find((line) => line.level === 'fatal');
    expect(fatal?.msg).to.equal(
      `cannot start: another job-manager (pid ${first.child.pid}) is using ${dir}; stop it, or set DATA_DIR to another folder (or DATABASE_URL to use your own PostgreSQL)`,
    );
    expect(isAlive(postgres), "the first service's PostgreSQL").to.equal(true);
    expect(await postmasterPid()).to.equal(postgres);
    const jobs = await fetch(`http://127.0.0.1:${port}/jobs`);
    expect(jobs.status).to.equal(200);
  });

  it('lets the dashboard tool relay to the running service without stopping its database', async () => {
    const postgres = await postmasterPid();
    const dashboard = runMain({ DATA_DIR: dir, DASHBOARD_PORT: '0' }, { entry: dashboardCli });
    others.push(dashboard);
    const url = (await dashboard.waitForLine((line) => /^ {2}URL: /.test(line.msg ?? ''), 60_000)).msg
      .replace(/^ {2}URL: +/, '')
      .trim();
    expect((await fetch(url)).status, 'the dashboard answers (401 without its credentials)').to.equal(401);
    expect(dashboard.output()).to.not.include('starting it for the dashboard');
    dashboard.child.kill('SIGTERM');
    expect((await dashboard.exited).code).to.equal(0);
    expect(isAlive(postgres), "the service's PostgreSQL after the dashboard stopped").to.equal(true);
    expect((await fetch(`http://127.0.0.1:${port}/jobs`)).status).to.equal(200);
  });

  it('gives the folder back on a clean stop, so the next start takes it', async () => {
    expect(existsSync(join(dir, lockFileName)), 'lock while running').to.equal(true);
    first.child.kill('SIGTERM');
    expect((await first.exited).code).to.equal(0);
    expect(existsSync(join(dir, lockFileName)), 'lock after a clean stop').to.equal(false);
  });
});

describe('DATA_DIR lock (db/data-dir-lock.ts)', () => {
  let dir: string;
  let bystander: TestProcess;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'jm-lock-'));
    bystander = startBystander();
  });
  afterEach(async () => {
    bystander.kill('SIGKILL');
    await bystander.exited;
    await rm(dir, { recursive: true, force: true });
  });
  const writeLock = (owner: object) => writeFile(join(dir, lockFileName), JSON.stringify(owner));

  it('refuses while the owning process runs (same pid, same start time), naming it', async () => {
    await writeLock({ pid: bystander.pid, startTime: processStartTime(bystander.pid!), since: 'test' });
    const error = await lockDataDir(dir).catch((failure: Error) => failure);
    expect(error).to.be.instanceOf(DataDirInUseError);
    expect((error as DataDirInUseError).ownerPid).to.equal(bystander.pid);
    expect(bystander.child.exitCode).to.equal(null);
  });

  it('takes over a lock whose pid now belongs to another process (other start time: reused after a restart)', async () => {
    await writeLock({ pid: bystander.pid, startTime: '1', since: 'test' });
    const lock = await lockDataDir(dir);
    expect(JSON.parse(await readFile(join(dir, lockFileName), 'utf8')).pid).to.equal(process.pid);
    await lock.release();
    expect(existsSync(join(dir, lockFileName))).to.equal(false);
  });

  it('takes over a lock whose process is gone, and one that is not a lock at all', async () => {
    const gone = startBystander('');
    await gone.exited;
    await writeLock({ pid: gone.pid, startTime: '1', since: 'test' });
    await (await lockDataDir(dir)).release();
    await writeFile(join(dir, lockFileName), 'garbage');
    await (await lockDataDir(dir)).release();
  });

  it('lets only one of two takers win at once', async () => {
    const results = await Promise.allSettled([lockDataDir(dir), lockDataDir(dir)]);
    expect(results.map((result) => result.status).sort()).to.deep.equal(['fulfilled', 'rejected']);
    const winner = results.find((result) => result.status === 'fulfilled') as PromiseFulfilledResult<DataDirLock>;
    await winner.value.release();
  });
});
