// Issue 10, point 1: closed by default. `npm start`'s entry point (src/main.ts)
// as a real process: without API_KEYS it listens on 127.0.0.1 only and says
// so; a non-loopback HOST without keys refuses to start (exit 78) unless
// ALLOW_UNAUTHENTICATED=true; with keys it listens on every interface.
import { type AddressInfo, createServer } from 'node:net';
import { networkInterfaces } from 'node:os';
import { expect } from 'chai';
import { useTestDatabase } from '../support/postgres.ts';
import { runMain, type TestProcess } from '../support/processes.ts';

/** src/main.ts as a real process (JSON logs at info, read line by line as they arrive). */
function run(env: Record<string, string>): TestProcess {
  return runMain({ FETCH_INTERVAL_MS: '3600000', ...env });
}

/** Waits for the "job-manager is up" log line; returns its host and port. */
async function upLine(started: TestProcess): Promise<{ host: string; port: number }> {
  const up = await started.waitForLine((line) => line.msg === 'job-manager is up', 60_000);
  return { host: up.host, port: up.port };
}

async function stop(started: TestProcess): Promise<void> {
  if (started.child.exitCode === null) started.child.kill('SIGTERM');
  await started.exited;
}

/** An IPv4 address of this machine that is not loopback, when it has one. */
const externalAddress = Object.values(networkInterfaces())
  .flat()
  .find((info) => info && info.family === 'IPv4' && !info.internal)?.address;

async function reachable(host: string, port: number): Promise<number | string> {
  try {
    const response = await fetch(`http://${host}:${port}/jobs`, { signal: AbortSignal.timeout(5_000) });
    await response.arrayBuffer();
    return response.status;
  } catch (error) {
    return String((error as { cause?: { code?: string } }).cause?.code ?? error);
  }
}

describe('listen address: closed by default (issue 10, point 1)', function () {
  this.timeout(120_000);
  const db = useTestDatabase();

  it('without API_KEYS listens on 127.0.0.1 only and says so at start', async () => {
    const started = run({ DATABASE_URL: db().url });
    try {
      const { host, port } = await upLine(started);
      expect(host).to.equal('127.0.0.1');
      const log = started.output();
      expect(log).to.include(`no API_KEYS: the API needs no key; listening on 127.0.0.1:${port} only`);
      expect(await reachable('127.0.0.1', port)).to.equal(200);
      if (externalAddress) expect(await reachable(externalAddress, port)).to.equal('ECONNREFUSED');
    } finally {
      await stop(started);
    }
  });

  it('a port already in use: exit 1 naming EADDRINUSE, and the job engine never started (no run taken)', async () => {
    const holder = createServer();
    await new Promise<void>((resolve) => holder.listen(0, '127.0.0.1', resolve));
    try {
      const port = (holder.address() as AddressInfo).port;
      const started = run({ DATABASE_URL: db().url, PORT: String(port), FETCH_INTERVAL_MS: '1000' });
      const { code } = await started.exited;
      expect(code).to.equal(1);
      expect(started.output()).to.include('EADDRINUSE');
      expect(started.output()).to.not.include('worker pool started');
    } finally {
      holder.close();
    }
  });

  it('refuses HOST=0.0.0.0 without API_KEYS: exit 78 with a message naming HOST', async () => {
    for (const host of ['0.0.0.0', '::', externalAddress ?? '192.0.2.10']) {
      const started = run({ DATABASE_URL: db().url, HOST: host });
      const { code } = await started.exited;
      expect(code, host).to.equal(78);
      const output = started.output();
      expect(output, host).to.include(`Invalid configuration: HOST is ${host}, which is reachable from the network`);
      expect(output, host).to.include('API_KEYS is not set');
      expect(output, host).to.include('ALLOW_UNAUTHENTICATED=true');
    }
  });

  it('starts open on 0.0.0.0 when ALLOW_UNAUTHENTICATED=true says so on purpose', async () => {
    const started = run({ DATABASE_URL: db().url, HOST: '0.0.0.0', ALLOW_UNAUTHENTICATED: 'true' });
    try {
      const { host, port } = await upLine(started);
      expect(host).to.equal('0.0.0.0');
      expect(started.output()).to.include('(ALLOW_UNAUTHENTICATED=true)');
      // It listens on every interface: the warning must not claim "only".
      expect(started.output()).to.include(`listening on 0.0.0.0:${port}, open to the network without a key`);
      expect(started.output()).to.not.include(`0.0.0.0:${port} only`);
      expect(await reachable('127.0.0.1', port)).to.equal(200);
      if (externalAddress) expect(await reachable(externalAddress, port)).to.equal(200);
    } finally {
      await stop(started);
    }
  });

  it('with API_KEYS listens on every interface by default, and every caller needs a key', async () => {
    const started = run({ DATABASE_URL: db().url, API_KEYS: 'a-key' });
    try {
      const { host, port } = await upLine(started);
      expect(host).to.equal('0.0.0.0');
      expect(started.output()).to.not.include('no API_KEYS');
      expect(await reachable('127.0.0.1', port)).to.equal(401);
      if (externalAddress) expect(await reachable(externalAddress, port)).to.equal(401);
    } finally {
      await stop(started);
    }
  });
});
