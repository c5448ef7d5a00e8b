// The configuration secret changing under a running service, with the real
// Vault CLI: a new version applied live within VAULT_REFRESH_SECONDS; a new
// version with an invalid value refused (the previous one keeps running, the
// value never logged); the latest version deleted, undeleted, destroyed.
import { expect } from 'chai';
import {
  refreshFailed as failed,
  lines,
  nthLine,
  refreshFailure,
  until,
  useVaultSuite,
  vaultFailures,
  vaultHealth,
} from './support.ts';

describe('the configuration secret changing (real Vault)', function () {
  this.timeout(120_000);
  const suite = useVaultSuite();
  const { vault, secret } = suite;

  before(async () => {
    await vault().run(['policy', 'write', 'job-manager', 'deploy/vault/job-manager-policy.hcl']);
  });

  async function startWithToken(name: string) {
    const token = secret(await vault().createToken(['-policy=job-manager', '-no-default-policy', '-period=1h']));
    return suite.start(name, { VAULT_TOKEN: token, WORKER_COUNT: '1' });
  }

  const kv = (...args: string[]) => vault().run(['kv', ...args]);
  /** `vault kv put|patch` and the version it wrote (the file's tests share one Vault, so versions accumulate). */
  async function write(verb: 'put' | 'patch', ...pairs: string[]): Promise<number> {
    return JSON.parse(await kv(verb, '-format=json', 'secret/job-manager', ...pairs)).data.version;
  }

  it('a new version is applied live, within VAULT_REFRESH_SECONDS, Vault over the environment', async () => {
    await kv('put', 'secret/job-manager', 'WORKER_COUNT=7', `API_KEYS=${secret('key-live-7f3a')}`);
    const pod = await startWithToken('changed');
    expect((await nthLine(pod, 'job-manager is up', 1)).workers).to.equal(7);

    await kv('patch', 'secret/job-manager', 'WORKER_COUNT=3', 'FETCH_INTERVAL_MS=2500');
    const changed = await nthLine(pod, 'configuration in Vault changed', 1, 5_000);
    expect(changed.changed).to.deep.equal(['FETCH_INTERVAL_MS', 'WORKER_COUNT']);
    const applied = await nthLine(pod, 'configuration from Vault applied', 1);
    expect(applied).to.include({ workers: 3, fetchIntervalMs: 2500 });
    expect(await vaultHealth(pod)).to.equal('ok');
  });

  it('a new version with an invalid value is refused: the previous one keeps running, the secret value is not logged', async () => {
    await kv('put', 'secret/job-manager', 'WORKER_COUNT=5');
    const pod = await startWithToken('invalid');

    // A secret setting: the reason names the key, never the value.
    const badSecret = secret('not-a-signing-secret-5c1e');
    await kv('patch', 'secret/job-manager', 'WORKER_COUNT=8', `WEBHOOK_SIGNING_SECRET=${badSecret}`);
    const refused = await nthLine(pod, 'configuration from Vault refused; keeping the previous configuration', 1);
    expect(refused.reason).to.equal(
      'Invalid configuration: WEBHOOK_SIGNING_SECRET secret 1 of 1 must be "whsec_" followed by base64 (set in Vault at secret/data/job-manager)',
    );
    expect(await vaultHealth(pod)).to.equal('stale');
    expect(await vaultFailures(pod, 'refused')).to.equal(1);
    expect(lines(pod, 'configuration from Vault applied')).to.have.length(0);

    // Fixed in the next version: applied, health back to ok.
    await kv('patch', 'secret/job-manager', 'WEBHOOK_SIGNING_SECRET=whsec_c2lnbmluZy1rZXktZm9yLXRlc3Rz');
    secret('whsec_c2lnbmluZy1rZXktZm9yLXRlc3Rz');
    expect((await nthLine(pod, 'configuration from Vault applied', 1)).workers).to.equal(8);
    expect(await vaultHealth(pod)).to.equal('ok');
    expect(await vaultFailures(pod, 'refused')).to.equal(1);
  });

  it('the latest version deleted (vault kv delete): kept and reported until undeleted', async () => {
    await write('put', 'WORKER_COUNT=4');
    const latest = await write('put', 'WORKER_COUNT=6');
    const pod = await startWithToken('deleted');
    expect((await nthLine(pod, 'job-manager is up', 1)).workers).to.equal(6);

    await kv('delete', 'secret/job-manager');
    const failure = await refreshFailure(pod, 'not-found');
    expect(failure.reason).to.equal(
      `the latest version (version ${latest}) of secret/data/job-manager is deleted (HTTP 404); undelete it or write a new version`,
    );
    await until('health shows vault down', async () => (await vaultHealth(pod)) === 'down');
    expect(await vaultFailures(pod, 'not_found')).to.be.at.least(1);
    // Not the older version 1 (WORKER_COUNT=4), not the defaults: what ran keeps running.
    expect(lines(pod, 'configuration from Vault applied')).to.have.length(0);

    await kv('undelete', `-versions=${latest}`, 'secret/job-manager');
    await nthLine(pod, 'Vault refresh works again', 1);
    expect(await vaultHealth(pod)).to.equal('ok');
    expect(lines(pod, 'configuration from Vault applied')).to.have.length(0);
  });

  it('an older version destroyed changes nothing; the latest destroyed is kept and reported until a new version', async () => {
    const older = await write('put', 'WORKER_COUNT=4');
    await write('put', 'WORKER_COUNT=8');
    const pod = await startWithToken('destroyed');
    expect((await nthLine(pod, 'job-manager is up', 1)).workers).to.equal(8);

    await kv('destroy', `-versions=${older}`, 'secret/job-manager');
    const latest = await write('patch', 'WORKER_COUNT=2');
    expect((await nthLine(pod, 'configuration from Vault applied', 1)).workers).to.equal(2);
    expect(lines(pod, failed)).to.have.length(0);

    await kv('destroy', `-versions=${latest}`, 'secret/job-manager');
    const failure = await refreshFailure(pod, 'not-found');
    expect(failure.reason).to.equal(
      `the latest version (version ${latest}) of secret/data/job-manager is destroyed (HTTP 404); write a new version`,
    );
    await until('health shows vault down', async () => (await vaultHealth(pod)) === 'down');
    expect(lines(pod, 'configuration from Vault applied')).to.have.length(1);

    await kv('put', 'secret/job-manager', 'WORKER_COUNT=5');
    expect((await nthLine(pod, 'configuration from Vault applied', 2)).workers).to.equal(5);
    expect(await vaultHealth(pod)).to.equal('ok');
  });
});
