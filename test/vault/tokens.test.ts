// The service's Vault token over time, against a real Vault: a static token
// with a short TTL kept alive by renewal; AppRole tokens renewed and, at
// their maximum TTL, replaced by a new login; a token revoked under a running
// service (AppRole logs in again; a static token is reported).
import { expect } from 'chai';
import { lines, nthLine, refreshFailure, until, useVaultSuite, vaultFailures, vaultHealth } from './support.ts';

describe('Vault tokens (real Vault)', function () {
  this.timeout(120_000);
  const suite = useVaultSuite();
  const { vault, secret, appRole } = suite;

  before(async () => {
    await vault().run(['policy', 'write', 'job-manager', 'deploy/vault/job-manager-policy.hcl']);
    await vault().run(['auth', 'enable', 'approle']);
  });

  beforeEach(async () => {
    await vault().run([
      'kv',
      'put',
      'secret/job-manager',
      'WORKER_COUNT=3',
      'WEBHOOK_AUTH_HEADER=x-ins-auth-key',
      `WEBHOOK_AUTH_VALUE=${secret('tok-webhook-9d2e')}`,
    ]);
  });

  /** Writes WORKER_COUNT and waits until the service applied it: proof that it still reads. */
  async function changeApplied(pod: Awaited<ReturnType<typeof suite.start>>, workers: number): Promise<void> {
    const before = lines(pod, 'configuration from Vault applied').length;
    await vault().run(['kv', 'patch', 'secret/job-manager', `WORKER_COUNT=${workers}`]);
    const applied = await nthLine(pod, 'configuration from Vault applied', before + 1);
    expect(applied.workers).to.equal(workers);
  }

  it('a static token with a 10 s renewable TTL is renewed and outlives it; reads continue', async () => {
    const token = secret(await vault().createToken(['-policy=job-manager', '-no-default-policy', '-ttl=10s']));
    const pod = await suite.start('static-renewed', { VAULT_TOKEN: token });
    // Three renewals at two thirds of the lease: the token is now well past its first 10 s.
    await nthLine(pod, 'vault token renewed', 3);
    const lookup = JSON.parse(await vault().run(['token', 'lookup', '-format=json', token]));
    expect(lookup.data.ttl).to.be.above(0);
    await changeApplied(pod, 4);
    expect(await vaultHealth(pod)).to.equal('ok');
  });

  it('AppRole with token_ttl=4s, token_max_ttl=10s: renewed, then a new login at the maximum TTL; reads continue', async () => {
    const pod = await suite.start('approle-max-ttl', await appRole('4s', '10s'));
    expect(lines(pod, 'logged in to Vault with AppRole')).to.have.length(1);
    await nthLine(pod, 'vault token renewed', 1);
    const again = await nthLine(pod, 'logging in to Vault again', 1, 20_000);
    expect(again.reason).to.equal('the token reached its maximum TTL');
    await nthLine(pod, 'logged in to Vault with AppRole', 2);
    // And again with the new token: each token lives out its maximum TTL, then is replaced.
    await nthLine(pod, 'logged in to Vault with AppRole', 3, 20_000);
    await changeApplied(pod, 6);
    expect(await vaultHealth(pod)).to.equal('ok');
    expect(await vaultFailures(pod, 'token_invalid')).to.equal(0);
  });

  it('AppRole token revoked under a running service (vault token revoke): it logs in again and keeps reading', async () => {
    const pod = await suite.start('approle-revoked', await appRole('1h', '24h'));
    await vault().run(['token', 'revoke', '-mode=path', 'auth/approle/login']);
    await nthLine(pod, 'logged in to Vault with AppRole', 2);
    await changeApplied(pod, 7);
    expect(await vaultHealth(pod)).to.equal('ok');
  });

  it('AppRole secret id destroyed under a running service: the login at the maximum TTL fails, reported, configuration kept; restored, it reads again', async () => {
    const credentials = await appRole('4s', '6s');
    const pod = await suite.start('approle-secret-id-destroyed', credentials);
    const destroy = JSON.stringify({ secret_id: credentials.VAULT_SECRET_ID });
    await vault().run(['write', 'auth/approle/role/job-manager/secret-id/destroy', '-'], { input: destroy });

    const retrying = await nthLine(pod, 'vault AppRole login failed; retrying', 1, 20_000);
    const reason = 'AppRole login failed (HTTP 400: invalid role or secret ID); check VAULT_ROLE_ID/VAULT_SECRET_ID';
    expect(retrying.reason).to.equal(reason);
    // Once its token has expired, every refresh fails the same way.
    expect((await refreshFailure(pod, 'login-failed')).reason).to.equal(reason);
    await until('health shows vault down', async () => (await vaultHealth(pod)) === 'down');
    await until('the metric counts it', async () => (await vaultFailures(pod, 'login_failed')) >= 1);
    expect(lines(pod, 'configuration from Vault applied')).to.have.length(0);

    // The same secret id issued again (custom-secret-id): the pod logs in by itself and reads on.
    await vault().run(['write', 'auth/approle/role/job-manager/custom-secret-id', '-'], { input: destroy });
    await nthLine(pod, 'Vault refresh works again', 1);
    await changeApplied(pod, 5);
  });

  it('a static token revoked under a running service: reported (log, health "down", metric), configuration kept', async () => {
    const token = secret(await vault().createToken(['-policy=job-manager', '-no-default-policy', '-period=1h']));
    const pod = await suite.start('static-revoked', { VAULT_TOKEN: token });
    expect((await nthLine(pod, 'job-manager is up', 1)).workers).to.equal(3);
    await vault().run(['token', 'revoke', token]);
    const failed = await nthLine(pod, 'Vault refresh failed; keeping the current configuration', 1);
    expect(failed.kind).to.equal('token-invalid');
    expect(failed.reason).to.equal(
      'the Vault token is no longer valid (revoked, expired, or unknown to this Vault): reading secret/data/job-manager and lookup-self answer HTTP 403; set a new VAULT_TOKEN and restart',
    );
    await until('health shows vault down', async () => (await vaultHealth(pod)) === 'down');
    await until('the metric counts it', async () => (await vaultFailures(pod, 'token_invalid')) >= 1);
    // Logged once, not at every refresh.
    await until('a few more refreshes', async () => (await vaultFailures(pod, 'token_invalid')) >= 3);
    expect(lines(pod, 'Vault refresh failed; keeping the current configuration')).to.have.length(1);
    expect(lines(pod, 'configuration from Vault applied')).to.have.length(0);
  });
});
