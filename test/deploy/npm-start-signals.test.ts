// `npm start` under a supervisor (systemd, pm2, a script) that signals only the
// pid it started, npm's: the service itself must get the SIGTERM and stop, not
// be left running with npm gone. The scripts `exec` node, so npm's child is
// the service and npm forwards the signal to it.
import { expect } from 'chai';
import { useTestDatabase } from '../support/postgres.ts';
import { launch } from '../support/processes.ts';

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
    const npm = launch('npm', {
      args: ['start', '--silent'],
      cwd: root,
      inheritEnv: false,
      env: { DATABASE_URL: db().url, PORT: '0', LOG_FORMAT: 'json' },
      group: true, // its own process group, so the clean-up below can reach whatever is left
    });
    try {
      const { port } = await npm.waitForLine((line) => line.msg === 'job-manager is up', 45_000);
      expect(await status(port)).to.equal(200);
      npm.kill('SIGTERM'); // npm only, as a supervisor would
      // The service holds the output pipes too: they close only when it has exited.
      const ended = await Promise.race([npm.exited.then(() => true), sleep(20_000).then(() => false)]);
      expect(ended, `the service outlived npm:\n${npm.output()}`).to.equal(true);
      expect(npm.output()).to.include('"msg":"stopped"');
      expect(await status(port)).to.equal('ECONNREFUSED');
    } finally {
      npm.killGroup(); // nothing when the group is gone: nothing was left behind
    }
  });
});
