// The set-up an operator follows (docs/vault.md, run exactly as written, and
// the compose stack's deploy/vault/init.sh) against a real Vault, and the
// policy: enough on its own (no default policy), a clear start-up error
// without "read", and a policy changed under a running service.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { expect } from 'chai';
import { projectRoot } from '../support/processes.ts';
import { policyFile } from '../support/vault-dev-server.ts';
import {
  documentedCommands,
  nthLine,
  policyWithoutRead,
  secretPath,
  until,
  useVaultSuite,
  vaultFailures,
  vaultHealth,
  vaultTokenPattern,
} from './support.ts';

describe('Vault set-up and policy (real Vault)', function () {
  this.timeout(120_000);
  const suite = useVaultSuite({ emptyVaultPerTest: true });
  const { vault, secret } = suite;
  const docs = documentedCommands();

  async function shell(script: string): Promise<string> {
    const result = await vault().shell(script);
    expect(result.code, `${script}\n${result.stderr}`).to.equal(0);
    return result.stdout;
  }

  /** Runs the credentials block as written, then prints what it exported. */
  async function approleCredentials(): Promise<{ VAULT_ROLE_ID: string; VAULT_SECRET_ID: string }> {
    const [roleId = '', secretId = ''] = (
      await shell(`${docs['approle-credentials']}\nprintf '%s\\n%s\\n' "$VAULT_ROLE_ID" "$VAULT_SECRET_ID"`)
    )
      .trim()
      .split('\n');
    expect(roleId).to.match(/^[0-9a-f-]{36}$/);
    return { VAULT_ROLE_ID: roleId, VAULT_SECRET_ID: secret(secretId) };
  }

  it('docs/vault.md: the policy, the AppRole, the secret and the credentials, as written, start the service', async () => {
    expect(Object.keys(docs).sort()).to.deep.equal([
      'approle-credentials',
      'approle-setup',
      'destroy-old-secret-id',
      'new-secret-id',
      'restore-credentials',
      'static-token',
      'write-secret',
    ]);
    await shell(docs['approle-setup']!);
    await shell(docs['write-secret']!);
    for (const value of ['change-me-webhook-key', 'change-me-api-key']) secret(value);

    const pod = await suite.start('docs-approle', await approleCredentials());
    const up = await nthLine(pod, 'job-manager is up', 1);
    expect(up.workers).to.equal(5);
    expect(await vaultHealth(pod)).to.equal('ok');
    const read = await nthLine(pod, 'read configuration from Vault', 1);
    expect(read.keys).to.include.members(['WORKER_COUNT', 'WEBHOOK_URL', 'WEBHOOK_AUTH_VALUE', 'API_KEYS']);

    // The static-token alternative, also as written: a periodic token under the same policy alone.
    const token = secret((await shell(docs['static-token']!)).trim());
    expect(token, 'what the suite checks every output for').to.match(vaultTokenPattern);
    const lookup = JSON.parse(await vault().run(['token', 'lookup', '-format=json', token]));
    expect(lookup.data.policies).to.deep.equal(['job-manager']);
    const withToken = await suite.start('docs-token', { VAULT_TOKEN: token });
    expect((await nthLine(withToken, 'job-manager is up', 1)).workers).to.equal(5);
    expect(await vaultHealth(withToken)).to.equal('ok');
  });

  it('docs/vault.md shows deploy/vault/job-manager-policy.hcl as it is (comments aside)', () => {
    const shown = /```hcl\n([\s\S]*?)```/.exec(readFileSync(join(projectRoot, 'docs', 'vault.md'), 'utf8'))?.[1];
    const file = readFileSync(policyFile, 'utf8')
      .split('\n')
      .filter((line) => !line.startsWith('#'))
      .join('\n')
      .replace(/\n{3,}/g, '\n\n')
      .trim();
    expect(shown?.trim()).to.equal(file);
  });

  it('deploy/vault/init.sh (the compose stack seed) sets up the same policy and role, and the service starts on it', async () => {
    const seeded = await shell('FORCE=1 sh deploy/vault/init.sh');
    expect(seeded).to.include('wrote secret/job-manager').and.to.include('AppRole auth/approle/role/job-manager ready');
    secret('dev-only-webhook-key');
    const policy = await vault().run(['policy', 'read', 'job-manager']);
    expect(policy).to.include('path "secret/data/job-manager"').and.to.include('auth/token/renew-self');
    const role = JSON.parse(await vault().run(['read', '-format=json', 'auth/approle/role/job-manager']));
    expect(role.data).to.include({ token_no_default_policy: true, token_ttl: 3600, token_max_ttl: 86400 });

    const pod = await suite.start('init-sh', await approleCredentials());
    expect((await nthLine(pod, 'job-manager is up', 1)).workers).to.equal(5);
    // A second run leaves the secret alone (operator changes survive).
    expect(await shell('sh deploy/vault/init.sh')).to.include('exists; leaving it as it is');
  });

  it('a token whose policy lacks "read" on the secret stops start-up, naming the path and the capability', async () => {
    await vault().run(['policy', 'write', 'job-manager-no-read', '-'], { input: policyWithoutRead() });
    await vault().run(['kv', 'put', 'secret/job-manager', 'WORKER_COUNT=4']);
    const token = secret(await vault().createToken(['-policy=job-manager-no-read', '-no-default-policy']));
    const run = suite.run('no-read', { VAULT_TOKEN: token });
    expect((await run.exited).code).to.equal(69);
    const fatal = run.lines.find((line) => line.level === 'fatal');
    expect(fatal?.msg).to.equal(
      `cannot start: Vault at ${vault().url}: permission denied reading ${secretPath} (HTTP 403): the token's policies do not grant the "read" capability on ${secretPath}`,
    );
    // Once, not retried: a policy does not fix itself.
    expect(run.lines.filter((line) => String(line.msg).includes('not ready; retrying'))).to.have.length(0);
  });

  it('a wrong AppRole secret id stops start-up at once, naming the settings and not the value', async () => {
    await shell(docs['approle-setup']!);
    const { VAULT_ROLE_ID } = await approleCredentials();
    const wrong = secret('4b7c2d1e-0000-4000-8000-00000000dead');
    const run = suite.run('wrong-secret-id', {
      VAULT_ROLE_ID,
      VAULT_SECRET_ID: wrong,
      VAULT_START_TIMEOUT_MS: '30000',
    });
    expect((await run.exited).code).to.equal(69);
    const fatal = run.lines.find((line) => line.level === 'fatal');
    expect(fatal?.msg).to.match(
      /^cannot start: Vault at \S+: AppRole login failed \(HTTP 400: .*\); check VAULT_ROLE_ID\/VAULT_SECRET_ID$/,
    );
    expect(run.lines.filter((line) => String(line.msg).includes('not ready; retrying'))).to.have.length(0);
  });

  it('docs/vault.md: rotating the secret id, as written: pods on the new one read on, the old one logs in no more', async () => {
    await shell(docs['approle-setup']!);
    await shell(docs['write-secret']!);
    for (const value of ['change-me-webhook-key', 'change-me-api-key']) secret(value);
    const old = await approleCredentials();
    const before = await suite.start('rotation-old', old);
    await nthLine(before, 'job-manager is up', 1);

    const issued = JSON.parse(await shell(docs['new-secret-id']!)).data;
    const renewed = { VAULT_ROLE_ID: old.VAULT_ROLE_ID, VAULT_SECRET_ID: secret(issued.secret_id) };
    const after = await suite.start('rotation-new', renewed);
    await nthLine(after, 'job-manager is up', 1);
    await before.stop('SIGTERM', 10_000);
    // The old secret id's accessor, as an operator who kept no record of it finds it.
    const oldAccessor = JSON.parse(
      await vault().run(['write', '-format=json', 'auth/approle/role/job-manager/secret-id/lookup', '-'], {
        input: JSON.stringify({ secret_id: old.VAULT_SECRET_ID }),
      }),
    ).data.secret_id_accessor;
    const destroyed = await vault().shell(docs['destroy-old-secret-id']!, { OLD_SECRET_ID_ACCESSOR: oldAccessor });
    expect(destroyed.code, destroyed.stderr).to.equal(0);

    const refused = suite.run('rotation-old-again', old);
    expect((await refused.exited).code).to.equal(69);
    expect(refused.lines.find((line) => line.level === 'fatal')?.msg).to.match(
      /AppRole login failed \(HTTP 400: invalid role or secret ID\); check VAULT_ROLE_ID\/VAULT_SECRET_ID$/,
    );
    await vault().run(['kv', 'patch', 'secret/job-manager', 'WORKER_COUNT=3']);
    expect((await nthLine(after, 'configuration from Vault applied', 1)).workers).to.equal(3);
  });

  it('a policy that loses "read" under a running service: configuration kept, failures counted, health "down"; restored, it reads again', async () => {
    await shell(docs['approle-setup']!);
    await vault().run(['kv', 'put', 'secret/job-manager', 'WORKER_COUNT=6']);
    const pod = await suite.start('policy-change', await approleCredentials());
    expect((await nthLine(pod, 'job-manager is up', 1)).workers).to.equal(6);
    expect(await vaultFailures(pod, 'forbidden')).to.equal(0);

    await vault().run(['policy', 'write', 'job-manager', '-'], { input: policyWithoutRead() });
    const failed = await nthLine(pod, 'Vault refresh failed; keeping the current configuration', 1);
    expect(failed.kind).to.equal('forbidden');
    expect(failed.reason).to.equal(
      `permission denied reading ${secretPath} (HTTP 403): the token's policies do not grant the "read" capability on ${secretPath}`,
    );
    await until('health shows vault down', async () => (await vaultHealth(pod)) === 'down');
    await until('the metric counts the failures', async () => (await vaultFailures(pod, 'forbidden')) >= 2);
    // The token is still good (no new login), and the configuration that ran before still runs.
    expect(pod.logged(/^logged in to Vault with AppRole$/)).to.have.length(1);
    await vault().run(['kv', 'put', 'secret/job-manager', 'WORKER_COUNT=2']);
    await vault().run(['policy', 'write', 'job-manager', 'deploy/vault/job-manager-policy.hcl']);
    const applied = await nthLine(pod, 'configuration from Vault applied', 1);
    expect(applied.workers).to.equal(2);
    expect(pod.logged(/^configuration from Vault applied$/)).to.have.length(1);
    await nthLine(pod, 'Vault refresh works again', 1);
    expect(await vaultHealth(pod)).to.equal('ok');
  });
});
