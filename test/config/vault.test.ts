import { expect } from 'chai';
import { pino } from 'pino';
import { ConfigError, type RawSettings, resolveConfig } from '../../src/config/config.ts';
import {
  loadVaultSettings,
  resolveConfigWithVault,
  startupConfig,
  VaultError,
  type VaultStart,
  VaultWatcher,
  vaultHealthCheck,
} from '../../src/config/vault.ts';
import { VaultStandIn } from '../support/vault-stand-in.ts';

const secretPath = 'secret/data/job-manager';
const readPath = `/v1/${secretPath}`;

/** A logger that keeps every line (no redaction: the Vault code itself must not log secrets). */
function capturingLogger() {
  const lines: string[] = [];
  const logger = pino({ level: 'debug' }, { write: (line: string) => void lines.push(line) });
  return { logger, lines };
}

function vaultEnv(vault: VaultStandIn, extra: RawSettings = {}): RawSettings {
  return { VAULT_ADDR: vault.url, VAULT_TOKEN: vault.rootToken, VAULT_START_TIMEOUT_MS: '2000', ...extra };
}

async function waitFor(condition: () => boolean, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

describe('Vault configuration', () => {
  let vault: VaultStandIn;
  let log: ReturnType<typeof capturingLogger>;
  const started: VaultStart[] = [];
  const watchers: VaultWatcher[] = [];
  const secretsUsed: string[] = [];

  async function load(env: RawSettings, options = {}): Promise<VaultStart> {
    const start = await loadVaultSettings(startupConfig(env).vault, log.logger, { firstRetryDelayMs: 50, ...options });
    started.push(start);
    return start;
  }

  function watch(start: VaultStart, onChange: (settings: RawSettings) => void | Promise<void>, intervalMs = 0) {
    const watcher = new VaultWatcher(start, { intervalMs, logger: log.logger, onChange });
    watchers.push(watcher);
    return watcher;
  }

  beforeEach(async () => {
    vault = await VaultStandIn.start();
    log = capturingLogger();
    secretsUsed.push(vault.rootToken);
    vault.setSecret(secretPath, {
      WORKER_COUNT: 7,
      WEBHOOK_URL: 'http://sink:3999/webhook',
      WEBHOOK_AUTH_HEADER: 'x-ins-auth-key',
      WEBHOOK_AUTH_VALUE: 'webhook-secret-value-1',
    });
    secretsUsed.push('webhook-secret-value-1');
  });

  afterEach(async () => {
    for (const watcher of watchers.splice(0)) await watcher.stop();
    for (const start of started.splice(0)) start.client.close();
    await vault.stop();
    // Whatever happened in the test, no token, secret id or secret value was logged.
    const output = log.lines.join('');
    for (const secret of secretsUsed) expect(output).not.to.include(secret);
  });

  it('reads the KV v2 secret with VAULT_TOKEN and stringifies its values', async () => {
    const { settings } = await load(vaultEnv(vault));
    expect(settings).to.deep.equal({
      WORKER_COUNT: '7',
      WEBHOOK_URL: 'http://sink:3999/webhook',
      WEBHOOK_AUTH_HEADER: 'x-ins-auth-key',
      WEBHOOK_AUTH_VALUE: 'webhook-secret-value-1',
    });
    expect(vault.requests.find((request) => request.path === readPath)?.hadToken).to.equal(true);
  });

  it('ignores VAULT_* and unknown keys in the secret, naming them in a warning', async () => {
    vault.setSecret(secretPath, { WORKER_COUNT: '4', VAULT_ADDR: 'http://elsewhere:8200', WORKERCOUNT: '9' });
    const { settings } = await load(vaultEnv(vault));
    expect(settings).to.deep.equal({ WORKER_COUNT: '4' });
    const output = log.lines.join('');
    expect(output).to.include('VAULT_ADDR').and.to.include('WORKERCOUNT');
  });

  it('logs in with AppRole, renews the token before it expires, and logs in again when renewal fails', async function () {
    this.timeout(10_000);
    const { roleId, secretId } = vault.addAppRole({ leaseSeconds: 1 });
    secretsUsed.push(secretId);
    const start = await load({ VAULT_ADDR: vault.url, VAULT_ROLE_ID: roleId, VAULT_SECRET_ID: secretId });
    expect(start.settings.WORKER_COUNT).to.equal('7');
    expect(vault.count('POST', '/v1/auth/approle/login')).to.equal(1);

    // Renewed at 2/3 of the 1 s lease, again and again: the token outlives its first lease.
    await waitFor(() => vault.count('POST', '/v1/auth/token/renew-self') >= 2);
    const reads = vault.count('GET', readPath);
    const watcher = watch(start, () => {});
    await watcher.refresh();
    expect(await watcher.check()).to.equal('ok');
    expect(vault.count('GET', readPath)).to.equal(reads + 1);
    expect(vault.count('POST', '/v1/auth/approle/login')).to.equal(1);

    // Tokens revoked: the next renewal answers 403, so the client logs in again.
    vault.revokeIssuedTokens();
    await waitFor(() => vault.count('POST', '/v1/auth/approle/login') >= 2);
    await watcher.refresh();
    expect(await watcher.check()).to.equal('ok');
  });

  it('logs in again when a read with an AppRole token answers 403', async () => {
    const { roleId, secretId } = vault.addAppRole({ leaseSeconds: 3_600 });
    secretsUsed.push(secretId);
    const start = await load({ VAULT_ADDR: vault.url, VAULT_ROLE_ID: roleId, VAULT_SECRET_ID: secretId });
    const watcher = watch(start, () => {});
    vault.revokeIssuedTokens();
    await watcher.refresh();
    expect(await watcher.check()).to.equal('ok');
    expect(vault.count('POST', '/v1/auth/approle/login')).to.equal(2);
  });

  it('fails fast with a clear message when the AppRole credentials are wrong', async () => {
    vault.addAppRole({ leaseSeconds: 60 });
    const error = await load({
      VAULT_ADDR: vault.url,
      VAULT_ROLE_ID: 'not-a-role',
      VAULT_SECRET_ID: 'wrong-secret-id-value',
      VAULT_START_TIMEOUT_MS: '10000',
    }).catch((e: unknown) => e);
    secretsUsed.push('wrong-secret-id-value');
    expect(error).to.be.instanceOf(VaultError);
    expect((error as Error).message).to.match(/AppRole login failed \(HTTP 400: invalid role or secret ID\)/);
    expect((error as Error).message).not.to.include('wrong-secret-id-value');
    expect(vault.count('POST', '/v1/auth/approle/login')).to.equal(1);
  });

  it('layers defaults < environment < Vault', async () => {
    const env = vaultEnv(vault, { WORKER_COUNT: '3', FETCH_INTERVAL_MS: '2000', WEBHOOK_URL: 'http://env-sink/hook' });
    const { settings } = await load(env);
    const config = resolveConfigWithVault(env, settings, secretPath);
    expect(config.workerCount).to.equal(7); // Vault beats the environment
    expect(config.webhook.url).to.equal('http://sink:3999/webhook');
    expect(config.fetchIntervalMs).to.equal(2000); // environment beats the default
    expect(config.messageMaxLength).to.equal(160); // default
    expect(config.webhook.authValue).to.equal('webhook-secret-value-1');
  });

  it('rejects an invalid value from Vault with a ConfigError naming the key and its source', async () => {
    vault.setSecret(secretPath, { WORKER_COUNT: 'lots' });
    const env = vaultEnv(vault, { WORKER_COUNT: '3' });
    const { settings } = await load(env);
    let error: unknown;
    try {
      resolveConfigWithVault(env, settings, secretPath);
    } catch (e) {
      error = e;
    }
    expect(error).to.be.instanceOf(ConfigError);
    expect((error as ConfigError).key).to.equal('WORKER_COUNT');
    expect((error as ConfigError).message)
      .to.include('WORKER_COUNT')
      .and.to.include(`Vault at ${secretPath}`);
  });

  it('fails fast on 403 with "permission denied reading <path>", without retrying', async () => {
    vault.forbidden = true;
    const begun = Date.now();
    const error = await load(vaultEnv(vault, { VAULT_START_TIMEOUT_MS: '10000' })).catch((e: unknown) => e);
    expect(error).to.be.instanceOf(VaultError);
    expect((error as Error).message).to.equal(
      `Vault at ${vault.url}: permission denied reading ${secretPath} (HTTP 403)`,
    );
    expect(Date.now() - begun).to.be.below(2_000);
    expect(vault.count('GET', readPath)).to.equal(1);
  });

  it('retries while Vault is down at start and gives up after VAULT_START_TIMEOUT_MS', async () => {
    await vault.setOutage('closed');
    const begun = Date.now();
    const error = await load(vaultEnv(vault, { VAULT_START_TIMEOUT_MS: '1200' })).catch((e: unknown) => e);
    const elapsed = Date.now() - begun;
    expect(error).to.be.instanceOf(VaultError);
    expect((error as Error).message).to.match(
      new RegExp(`^Vault at ${vault.url} unreachable after \\d+ ms \\(\\d+ attempts\\): .*ECONNREFUSED`),
    );
    expect(elapsed).to.be.at.least(1_200).and.below(4_000);
    const attempts = Number(/\((\d+) attempts\)/.exec((error as Error).message)?.[1]);
    expect(attempts).to.be.at.least(3);
  });

  it('retries a sealed Vault (503) at start and succeeds once it answers', async () => {
    await vault.setOutage('sealed');
    setTimeout(() => void vault.setOutage('none'), 400);
    const { settings } = await load(vaultEnv(vault, { VAULT_START_TIMEOUT_MS: '5000' }));
    expect(settings.WORKER_COUNT).to.equal('7');
    expect(vault.count('GET', readPath)).to.be.at.least(2);
    expect(log.lines.join('')).to.include('Vault is sealed');
  });

  it('gives up on a sealed Vault after the timeout, naming the 503', async () => {
    await vault.setOutage('sealed');
    const error = await load(vaultEnv(vault, { VAULT_START_TIMEOUT_MS: '600' })).catch((e: unknown) => e);
    expect((error as Error).message).to.match(/unreachable after \d+ ms .*HTTP 503: Vault is sealed/);
  });

  it('keeps the current configuration through an outage while running, and picks up changes after it', async () => {
    const start = await load(vaultEnv(vault));
    const received: RawSettings[] = [];
    const watcher = watch(start, (settings) => void received.push(settings));

    await vault.setOutage('closed');
    await watcher.refresh();
    let failure: unknown;
    await watcher.check().catch((e: unknown) => (failure = e));
    expect(String(failure)).to.match(/ECONNREFUSED|ECONNRESET|socket hang up/);
    expect(received).to.have.length(0);

    await vault.setOutage('sealed');
    await watcher.refresh();
    await watcher.check().catch((e: unknown) => (failure = e));
    expect(String(failure)).to.include('HTTP 503');

    await vault.setOutage('none');
    vault.setSecret(secretPath, { WORKER_COUNT: 2 });
    await watcher.refresh();
    expect(await watcher.check()).to.equal('ok');
    expect(received).to.deep.equal([{ WORKER_COUNT: '2' }]);
  });

  it('reports a live change of WORKER_COUNT through the callback, on its interval', async () => {
    const env = vaultEnv(vault);
    const start = await load(env);
    let config = resolveConfigWithVault(env, start.settings, secretPath);
    expect(config.workerCount).to.equal(7);
    let calls = 0;
    watch(
      start,
      (settings) => {
        calls++;
        config = resolveConfigWithVault(env, settings, secretPath);
      },
      50,
    ).start();

    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(calls, 'no callback while the secret is unchanged').to.equal(0);
    vault.setSecret(secretPath, { WORKER_COUNT: 8, WEBHOOK_URL: 'http://sink:3999/webhook' });
    await waitFor(() => calls === 1);
    expect(config.workerCount).to.equal(8);
  });

  it('keeps the previous configuration when the changed secret is invalid, and reports "stale"', async () => {
    const env = vaultEnv(vault);
    const start = await load(env);
    let config = resolveConfig(env, start.settings);
    const watcher = watch(start, (settings) => {
      config = resolveConfigWithVault(env, settings, secretPath);
    });
    vault.setSecret(secretPath, { WORKER_COUNT: 'many' });
    await watcher.refresh();
    expect(config.workerCount).to.equal(7);
    expect(await watcher.check()).to.equal('stale');
    expect(log.lines.join('')).to.include('WORKER_COUNT');

    vault.setSecret(secretPath, { WORKER_COUNT: 6 });
    await watcher.refresh();
    expect(config.workerCount).to.equal(6);
    expect(await watcher.check()).to.equal('ok');
  });

  it('offers a "vault" health check: disabled without Vault, else the watcher state', async () => {
    expect(await vaultHealthCheck(undefined).check()).to.equal('disabled');
    const watcher = watch(await load(vaultEnv(vault)), () => {});
    const check = vaultHealthCheck(watcher);
    expect(check).to.include({ name: 'vault', critical: false });
    expect(await check.check()).to.equal('ok');
  });

  it('takes the Vault connection from the environment alone', () => {
    const config = startupConfig({ ...vaultEnv(vault), WORKER_COUNT: 'not-validated-yet', LOG_LEVEL: 'debug' });
    expect(config.vault.addr).to.equal(vault.url);
    expect(config.logLevel).to.equal('debug');
    expect(() => startupConfig({ VAULT_ADDR: vault.url })).to.throw(ConfigError, /VAULT_TOKEN/);
  });
});
