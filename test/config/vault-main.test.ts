// `node src/main.ts` end to end with a Vault stand-in, so that every `npm test`
// run (no Vault binary needed) covers main.ts's Vault path: configuration
// from Vault at start, live changes applied, "needs restart" reported,
// refused values kept out, and the start-up exit codes. The same and more
// against a real Vault: test/vault/ (npm run test:vault).

import { expect } from 'chai';
import { useTestDatabase } from '../support/postgres.ts';
import { runMain, type TestProcess } from '../support/processes.ts';
import { VaultStandIn } from '../support/vault-stand-in.ts';

const secretPath = 'secret/data/job-manager';

describe('main.ts with Vault', function () {
  this.timeout(60_000);
  const db = useTestDatabase();
  let vault: VaultStandIn;
  const running: TestProcess[] = [];

  beforeEach(async () => {
    vault = await VaultStandIn.start();
  });

  afterEach(async () => {
    for (const run of running.splice(0)) {
      if (run.child.exitCode === null) run.child.kill('SIGKILL');
      await run.exited;
    }
    await vault.stop();
  });

  function start(extra: Record<string, string> = {}): TestProcess {
    const run = runMain({
      DATABASE_URL: db().url,
      PORT: '0',
      INSTANCE_ID: 'vault-main-test',
      VAULT_ADDR: vault.url,
      VAULT_TOKEN: vault.rootToken,
      VAULT_REFRESH_SECONDS: '1',
      VAULT_START_TIMEOUT_MS: '3000',
      ...extra,
    });
    running.push(run);
    return run;
  }

  it('starts with the Vault config, applies live changes, reports restarts and refusals, and stops on SIGTERM', async () => {
    vault.setSecret(secretPath, {
      WORKER_COUNT: 3,
      WEBHOOK_AUTH_HEADER: 'x-ins-auth-key',
      WEBHOOK_AUTH_VALUE: 'auth-value-8c1f',
      API_KEYS: 'key-one-55aa',
    });
    const run = start({ WORKER_COUNT: '1' });
    const up = await run.waitForLine((line) => line.msg === 'job-manager is up');
    expect(up.workers).to.equal(3);

    const health = await fetch(`http://127.0.0.1:${up.port}/health-check`);
    const body = (await health.json()) as { checks: Record<string, string> };
    expect(body.checks.vault).to.equal('ok');
    expect(JSON.stringify(body)).not.to.include('auth-value-8c1f');

    vault.setSecret(secretPath, {
      WORKER_COUNT: 6,
      WEBHOOK_AUTH_HEADER: 'x-ins-auth-key',
      WEBHOOK_AUTH_VALUE: 'auth-value-8c1f',
      API_KEYS: 'key-one-55aa',
      PORT: 9999,
    });
    const applied = await run.waitForLine((line) => line.msg === 'configuration from Vault applied');
    expect(applied.workers).to.equal(6);
    const restart = await run.waitForLine((line) => String(line.msg).startsWith('needs restart'));
    expect(restart.settings).to.deep.equal(['PORT']);

    vault.setSecret(secretPath, { WORKER_COUNT: 'zero' });
    const refused = await run.waitForLine((line) => String(line.msg).includes('refused'));
    expect(refused.reason).to.include('WORKER_COUNT');
    const stillOk = await fetch(`http://127.0.0.1:${up.port}/health-check`);
    expect(((await stillOk.json()) as { checks: Record<string, string> }).checks.vault).to.equal('stale');

    run.child.kill('SIGTERM');
    expect((await run.exited).code).to.equal(0);
    expect(run.lines.some((line) => line.msg === 'stopped')).to.equal(true);
    for (const secret of [vault.rootToken, 'auth-value-8c1f', 'key-one-55aa']) {
      expect(run.output()).not.to.include(secret);
    }
  });

  it('exits 69 naming Vault when it stays unreachable', async () => {
    await vault.close();
    const run = start({ VAULT_START_TIMEOUT_MS: '500' });
    expect((await run.exited).code).to.equal(69);
    expect(run.output()).to.match(new RegExp(`Vault at ${vault.url} unreachable after \\d+ ms`));
  });

  it('exits 78 naming the key when a Vault value is invalid', async () => {
    vault.setSecret(secretPath, { MESSAGE_MAX_LENGTH: 'long' });
    const run = start();
    expect((await run.exited).code).to.equal(78);
    expect(run.output()).to.include('MESSAGE_MAX_LENGTH').and.to.include(`Vault at ${secretPath}`);
  });
});
