// The Vault layer as every `npm test` run checks it, with no Vault binary on
// the machine: reading and layering the KV v2 secret, the keys it ignores,
// the start-up retry window, the health check. A small stand-in
// (test/support/vault-stand-in.ts) serves the KV v2 read. Everything a real
// Vault can show (AppRole, renewal, revocation, policies, seal, deleted
// versions) is proven against one in test/vault/ (npm run test:vault).
import { expect } from 'chai';
import { pino } from 'pino';
import { ConfigError, type RawSettings } from '../../src/config/config.ts';
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

  it('retries while Vault is down at start and gives up after VAULT_START_TIMEOUT_MS', async () => {
    await vault.close();
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
