// `npm start` under a supervisor (systemd, pm2, a script) that signals only the
// pid it started, npm's: the service itself must get the SIGTERM and stop, not
// be left running with npm gone. The scripts `exec` node, so npm's child is
// the service and npm forwards the signal to it.
import { spawn } from 'node:child_process';
import { expect } from 'chai';
import { useTestDatabase } from '../support/postgres.ts';
import { eventually } from '../support/service.ts';

const root = new URL('../../', import.meta.url).pathname;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function status(port: number): Promise<number | string> {
  try {
    const response = await fetch(`http://127.0.0.1:${port}/health-alive`, { signal: AbortSignal.timeout(5_000) });
    await response.arrayBuffer();
    return response.status;
  } catch (error) {
    return String((error as { cause?: { code?: string } }).cause?.code ?? error);
  }
}

describe('npm start: a SIGTERM to npm stops the service', function () {
  this.timeout(60_000);
  const db = useTestDatabase();

  it('the service logs "stopped" and its process is gone, with only npm signalled', async () => {
    const npm = spawn('npm', ['start', '--silent'], {
      cwd: root,
      env: { PATH: process.env.PATH ?? '', DATABASE_URL: db().url, PORT: '0', LOG_FORMAT: 'json' },
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true, // its own process group, so the clean-up below can reach whatever is left
    });
    let output = '';
    npm.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString()));
    npm.stderr!.on('data', (chunk: Buffer) => (output += chunk.toString()));
    const closed = new Promise<void>((resolve) => npm.on('close', () => resolve()));
    try {
      const upLine = await eventually(
        async () => output.split('\n').find((text) => text.includes('job-manager is up')),
        (line) => line !== undefined,
        { timeoutMs: 45_000 },
      );
      const { port } = JSON.parse(upLine!) as { port: number };
      expect(await status(port)).to.equal(200);
      npm.kill('SIGTERM'); // npm only, as a supervisor would
      // The service holds the output pipes too: they close only when it has exited.
      const ended = await Promise.race([closed.then(() => true), sleep(20_000).then(() => false)]);
      expect(ended, `the service outlived npm:\n${output}`).to.equal(true);
      expect(output).to.include('"msg":"stopped"');
      expect(await status(port)).to.equal('ECONNREFUSED');
    } finally {
      try {
        process.kill(-npm.pid!, 'SIGKILL');
      } catch {
        // the group is gone: nothing was left behind
      }
    }
  });
});
