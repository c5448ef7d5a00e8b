// Vault itself going away under a running service: sealed and unsealed
// (`vault operator seal`, then unseal with the key the dev server printed),
// and restarted (a dev server comes back empty). The service keeps its last
// good configuration, says so (log, health, metric) and recovers.
import { expect } from 'chai';
import {
  documentedCommands,
  lines,
  nthLine,
  refreshFailure,
  until,
  useVaultSuite,
  vaultFailures,
  vaultHealth,
} from './support.ts';

describe('Vault sealed and restarted (real Vault)', function () {
  this.timeout(120_000);
  const suite = useVaultSuite();
  const { vault, secret } = suite;

  /** The policy, the AppRole (token_ttl as given), the secret; returns the service's credentials. */
  async function seed(tokenTtl = '1h'): Promise<Record<string, string>> {
    await vault().run(['policy', 'write', 'job-manager', 'deploy/vault/job-manager-policy.hcl']);
    await vault().run(['kv', 'put', 'secret/job-manager', 'WORKER_COUNT=4', `API_KEYS=${secret('key-outage-21b7')}`]);
    if (!(await vault().run(['auth', 'list'])).includes('approle/')) await vault().run(['auth', 'enable', 'approle']);
    return suite.appRole(tokenTtl, '24h');
  }

  it('sealed: configuration kept, health "down", failures counted as "sealed"; unsealed: reads and applies again', async () => {
    const pod = await suite.start('sealed', await seed());
    await vault().seal();
    const failure = await refreshFailure(pod, 'sealed');
    expect(failure.reason).to.match(/HTTP 503: Vault is sealed \(unseal it\)$/);
    await until('health shows vault down', async () => (await vaultHealth(pod)) === 'down');
    await until('the metric counts it', async () => (await vaultFailures(pod, 'sealed')) >= 2);
    // The API still answers: Vault is not critical.
    expect((await fetch(`${pod.url}/health-check`)).status).to.equal(200);

    await vault().unseal();
    await nthLine(pod, 'Vault refresh works again', 1);
    expect(await vaultHealth(pod)).to.equal('ok');
    await vault().run(['kv', 'patch', 'secret/job-manager', 'WORKER_COUNT=2']);
    expect((await nthLine(pod, 'configuration from Vault applied', 1)).workers).to.equal(2);
  });

  it('sealed at start: retried with backoff, and up once unsealed', async () => {
    const credentials = await seed();
    await vault().seal();
    const run = suite.run('sealed-at-start', { ...credentials, VAULT_START_TIMEOUT_MS: '60000' });
    const waiting = await run.waitForLine((line) => String(line.msg).endsWith('not ready; retrying'));
    expect(waiting.reason).to.match(/HTTP 503: Vault is sealed/);
    await vault().unseal();
    const up = await run.waitForLine((line) => line.msg === 'job-manager is up');
    expect(up.workers).to.equal(4);
  });

  it('a static token whose renewal falls in a seal is renewed after the unseal and outlives its TTL', async () => {
    await seed();
    const token = secret(await vault().createToken(['-policy=job-manager', '-no-default-policy', '-ttl=12s']));
    const pod = await suite.start('sealed-renewal', { VAULT_TOKEN: token });
    await nthLine(pod, 'vault token renewed', 1);
    await vault().seal();
    const missed = await nthLine(pod, 'vault token renewal failed; retrying', 1);
    expect(missed.reason).to.include('Vault is sealed');
    await vault().unseal();
    await nthLine(pod, 'vault token renewed', 2);
    // Renewed again on its own schedule afterwards: the token stays alive, and reads work.
    await nthLine(pod, 'vault token renewed', 3, 30_000);
    await vault().run(['kv', 'patch', 'secret/job-manager', 'WORKER_COUNT=6']);
    expect((await nthLine(pod, 'configuration from Vault applied', 1)).workers).to.equal(6);
  });

  it('restarted empty: the last good configuration keeps running and the service says so; restored, it reads again', async () => {
    const credentials = await seed();
    const pod = await suite.start('restarted', credentials);
    expect((await nthLine(pod, 'job-manager is up', 1)).workers).to.equal(4);

    await vault().restart(); // a dev server keeps nothing: no secret, no policy, no AppRole, no tokens
    // While it restarts a refresh may find the port closed first (kind "unavailable"); then the token is unknown
    // and the new login goes to a path where nothing is mounted: Vault's two errors, on one line.
    const failure = await refreshFailure(pod, 'login-failed');
    expect(failure.reason).to.equal(
      'AppRole login failed (HTTP 403: permission denied; invalid token); check VAULT_ROLE_ID/VAULT_SECRET_ID',
    );
    await until('health shows vault down', async () => (await vaultHealth(pod)) === 'down');
    await until('the metric counts it', async () => (await vaultFailures(pod, 'login_failed')) >= 1);
    expect(lines(pod, 'configuration from Vault applied')).to.have.length(0);

    // The operator restores Vault: the seed again, and (docs/vault.md, as written) the pods' own role id and secret id.
    await seed();
    const restored = await vault().shell(documentedCommands()['restore-credentials']!, credentials);
    expect(restored.code, restored.stderr).to.equal(0);
    await nthLine(pod, 'Vault refresh works again', 1);
    expect(await vaultHealth(pod)).to.equal('ok');
    await vault().run(['kv', 'patch', 'secret/job-manager', 'WORKER_COUNT=3']);
    expect((await nthLine(pod, 'configuration from Vault applied', 1)).workers).to.equal(3);
  });
});
