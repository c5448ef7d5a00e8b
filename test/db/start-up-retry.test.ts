// `node src/main.ts` whose DATABASE_URL does not answer at start (tester's
// report, point 4): it retries with backoff, logging each retry, and either
// comes up when the database appears or exits 69 (EX_UNAVAILABLE) naming the
// host, never the password. Real processes, a real port with nothing behind it.
import { expect } from 'chai';
import { findFreePort } from '../../src/db/embedded.ts';
import { useTestDatabase } from '../support/postgres.ts';
import { runMain, type TestProcess } from '../support/processes.ts';
import { startTcpForwarder, type TcpForwarder } from '../support/tcp-forwarder.ts';

const isRetry = (line: Record<string, any>) => /not reachable yet; retrying$/.test(line.msg ?? '');

describe('start-up with a database that does not answer yet', function () {
  this.timeout(60_000);
  const db = useTestDatabase();
  const running: TestProcess[] = [];
  let forwarder: TcpForwarder | undefined;

  afterEach(async () => {
    for (const run of running.splice(0)) {
      if (run.child.exitCode === null) run.child.kill('SIGKILL');
      await run.exited;
    }
    await forwarder?.stop();
    forwarder = undefined;
  });

  it('retries with backoff, then exits 69 naming the host and port, never the password', async () => {
    const port = await findFreePort(); // nothing listens there
    const run = runMain({
      DATABASE_URL: `postgres://app:S3cretPW@127.0.0.1:${port}/jobs`,
      DATABASE_START_TIMEOUT_MS: '2000',
    });
    running.push(run);
    expect((await run.exited).code).to.equal(69);

    const retries = run.lines.filter(isRetry);
    expect(retries.length, 'retries logged').to.be.at.least(2);
    expect(retries[0]).to.include({ level: 'warn', database: `127.0.0.1:${port}`, attempt: 1, retryInMs: 250 });
    expect(retries[1]).to.include({ attempt: 2, retryInMs: 500 });
    const fatal = run.lines.find((line) => line.level === 'fatal');
    expect(fatal?.msg).to.match(
      new RegExp(
        `^cannot start: the database at 127\\.0\\.0\\.1:${port} is unreachable after \\d+ ms \\(${retries.length + 1} attempts, DATABASE_START_TIMEOUT_MS=2000\\): connect ECONNREFUSED 127\\.0\\.0\\.1:${port}$`,
      ),
    );
    expect(run.output()).to.not.include('S3cretPW');
  });

  it('comes up once the database appears during the window', async () => {
    const target = new URL(db().url);
    forwarder = await startTcpForwarder(target.hostname, Number(target.port));
    await forwarder.close(); // the port is known, nothing listens on it yet
    const url = new URL(db().url);
    url.port = String(forwarder.port);
    const run = runMain({ DATABASE_URL: url.toString(), DATABASE_START_TIMEOUT_MS: '60000' });
    running.push(run);

    await run.waitForLine(isRetry);
    await forwarder.open(); // the database "starts"
    const up = await run.waitForLine((line) => line.msg === 'job-manager is up');
    expect(run.lines.filter(isRetry).length).to.be.at.least(1);
    const alive = await fetch(`http://127.0.0.1:${up.port}/health-alive`);
    expect(alive.status).to.equal(200);

    run.child.kill('SIGTERM');
    expect((await run.exited).code).to.equal(0);
  });
});
