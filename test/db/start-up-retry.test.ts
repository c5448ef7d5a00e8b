// `node src/main.ts` whose DATABASE_URL does not answer at start (tester's
// report, point 4): it retries with backoff, logging each retry, and either
// comes up when the database appears or exits 69 (EX_UNAVAILABLE) naming the
// host, never the password. Real processes, a real port with nothing behind it.
import { expect } from 'chai';
import { DatabaseUnreachableError, startUpSteps } from '../../src/db/database.ts';
import { findFreePort } from '../../src/db/embedded.ts';
import { createLogger } from '../../src/observability/logger.ts';
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

  describe('every start-up step shares one window', () => {
    const tooMany = Object.assign(new Error('sorry, too many clients already'), { code: '53300' });
    const reserved = Object.assign(new Error('remaining connection slots are reserved for superusers'), {
      code: '53300',
    });
    const failing = (errors: Error[]) => async () => {
      const next = errors.shift();
      if (next) throw next;
      return 'started';
    };

    it('retries "too many clients" (SQLSTATE class 53) at a later step, then goes on', async () => {
      const warnings: string[] = [];
      const logger = createLogger({
        level: 'warn',
        instanceId: 'test',
        destination: { write: (line: string) => warnings.push(line) },
      });
      const step = startUpSteps('postgres://app:pw@db.example:6432/jobs', 10_000, logger);
      expect(await step('migrate', failing([]))).to.equal('started');
      expect(await step('pg-boss', failing([tooMany, reserved]))).to.equal('started');
      const logged = warnings.map((line) => JSON.parse(line));
      expect(logged.map((line) => [line.step, line.attempt, line.reason])).to.deep.equal([
        ['pg-boss', 1, 'sorry, too many clients already'],
        ['pg-boss', 2, 'remaining connection slots are reserved for superusers'],
      ]);
    });

    it('gives up at once in a later step when the window is 0 (one attempt each), naming the host only', async () => {
      const logger = createLogger({ level: 'fatal', instanceId: 'test', destination: { write: () => {} } });
      const step = startUpSteps('postgres://app:pw@db.example:6432/jobs', 0, logger);
      expect(await step('connect', failing([]))).to.equal('started');
      const error = await step('listener', failing([tooMany])).catch((e: unknown) => e);
      expect(error).to.be.instanceOf(DatabaseUnreachableError);
      expect((error as Error).message).to.match(
        /^the database at db\.example:6432 is unreachable after \d+ ms \(1 attempts, DATABASE_START_TIMEOUT_MS=0\): sorry, too many clients already$/,
      );
    });

    it('does not retry what is not about reaching the database (a failing migration)', async () => {
      const logger = createLogger({ level: 'fatal', instanceId: 'test', destination: { write: () => {} } });
      const step = startUpSteps('postgres://db.example/jobs', 10_000, logger);
      const broken = Object.assign(new Error('syntax error at or near "SELEC"'), { code: '42601' });
      let attempts = 0;
      const error = await step('migrate', async () => {
        attempts += 1;
        throw broken;
      }).catch((e: unknown) => e);
      expect([error, attempts]).to.deep.equal([broken, 1]);
    });
  });
});
