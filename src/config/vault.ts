import type { Logger } from '../observability/logger.ts';
import type { VaultFailureReason } from '../observability/metrics.ts';
import { withoutCredentials } from '../observability/safe-url.ts';
import { type Config, type RawSettings, resolveConfig } from './config.ts';
import { LiveConfig } from './live-config.ts';
import { settingNames, settingsTable } from './settings.ts';
import { VaultClient, type VaultClientOptions, VaultError } from './vault-client.ts';

export { VaultClient, VaultError };

/**
 * The Vault layer of the configuration (defaults < environment < Vault).
 *
 * Start: `loadVaultSettings` reads the secret, retrying with exponential
 * backoff up to the start timeout; 403, a failed AppRole login or a
 * malformed secret fail at once. Running: a `VaultWatcher` re-reads it every
 * refresh interval and hands changed settings to a callback, which
 * resolves and applies them (or throws to keep the old configuration).
 * How to reach Vault (the `vault` group of the settings table) comes from the
 * environment only; those keys
 * inside the secret are ignored.
 */

/** Settings that must be known before Vault is read, validated from the environment alone. */
const vaultSettingNames: ReadonlySet<string> = new Set(Object.values(settingsTable.vault).map((s) => s.env));
const startupSettingNames: readonly string[] = [
  ...vaultSettingNames,
  settingsTable.logLevel.env,
  settingsTable.logFormat.env,
  settingsTable.instanceId.env,
];

/** The configuration made of the environment's Vault settings, log level and format and instance id (the rest defaulted). */
export function startupConfig(env: RawSettings): Config {
  return resolveConfig(Object.fromEntries(startupSettingNames.map((name) => [name, env[name]])));
}

export interface VaultStart {
  /** Settings from the secret, ready to be the top layer of resolveConfig. */
  settings: RawSettings;
  /** The authenticated client, for a VaultWatcher (close it if you do not watch). */
  client: VaultClient;
  /** Identifies the secret's content as read (a watcher reports changes from it). */
  secretFingerprint: string;
}

export interface LoadVaultOptions extends VaultClientOptions {
  /** First retry delay; doubles up to maxRetryDelayMs (defaults 250 ms, 5 s). */
  firstRetryDelayMs?: number;
  maxRetryDelayMs?: number;
}

/** Reads the config secret at start. Throws VaultError with a message fit for an operator. */
export async function loadVaultSettings(
  vault: Config['vault'],
  logger: Logger,
  options: LoadVaultOptions = {},
): Promise<VaultStart> {
  if (!vault.addr) throw new VaultError('rejected', `${settingsTable.vault.addr.env} is not set`);
  const where = `Vault at ${withoutCredentials(vault.addr)}`;
  const client = new VaultClient(
    {
      addr: vault.addr,
      token: vault.token,
      roleId: vault.roleId,
      secretId: vault.secretId,
      secretPath: vault.secretPath,
    },
    logger,
    options,
  );
  const requestTimeoutMs = options.requestTimeoutMs ?? 5_000;
  const started = Date.now();
  const deadline = started + vault.startTimeoutMs;
  let delayMs = options.firstRetryDelayMs ?? 250;
  for (let attempt = 1; ; attempt++) {
    const timeoutMs = Math.max(250, Math.min(requestTimeoutMs, deadline - Date.now()));
    try {
      await client.authenticate(timeoutMs);
      const raw = await client.readSettings(timeoutMs);
      await client.keepTokenAlive();
      const settings = settingsFromSecret(raw, vault.secretPath, logger);
      logger.info(
        {
          vault: withoutCredentials(vault.addr),
          path: vault.secretPath,
          keys: Object.keys(settings),
          attempts: attempt,
        },
        'read configuration from Vault',
      );
      return { settings, client, secretFingerprint: fingerprint(raw) };
    } catch (error) {
      const failure = error instanceof VaultError ? error : new VaultError('unavailable', String(error));
      const elapsed = Date.now() - started;
      if (!failure.retryable) {
        client.close();
        throw new VaultError(failure.kind, `${where}: ${failure.message}`);
      }
      if (Date.now() >= deadline) {
        client.close();
        throw new VaultError(
          failure.kind,
          failure.kind === 'not-found'
            ? `${where}: ${failure.message}; gave up after ${elapsed} ms (${attempt} attempts)`
            : `${where} unreachable after ${elapsed} ms (${attempt} attempts): ${failure.message}`,
        );
      }
      const waitMs = Math.min(delayMs, deadline - Date.now());
      logger.warn({ attempt, retryInMs: waitMs, reason: failure.message }, `${where} not ready; retrying`);
      await new Promise((resolve) => setTimeout(resolve, waitMs));
      delayMs = Math.min(delayMs * 2, options.maxRetryDelayMs ?? 5_000);
    }
  }
}

/**
 * resolveConfig(env, vault settings), with a ConfigError saying when the
 * offending value came from Vault.
 */
export function resolveConfigWithVault(env: RawSettings, vaultSettings: RawSettings, secretPath: string): Config {
  return new LiveConfig(env, vaultSettings, `Vault at ${secretPath}`).current;
}

/** Where the watcher counts failed refreshes (the service's job_manager_vault_refresh_failures_total). */
export interface VaultFailureCounter {
  inc(labels: { reason: VaultFailureReason }): void;
}

/** The `reason` label of a failed refresh: the VaultError kind, or `refused` for a configuration refused. */
const failureReason: Record<VaultError['kind'] | 'refused', VaultFailureReason> = {
  unavailable: 'unavailable',
  sealed: 'sealed',
  'not-found': 'not_found',
  forbidden: 'forbidden',
  'token-invalid': 'token_invalid',
  'login-failed': 'login_failed',
  'invalid-secret': 'invalid_secret',
  rejected: 'rejected',
  refused: 'refused',
};

export interface VaultWatcherOptions {
  /** Time between two reads; 0 disables watching. */
  intervalMs: number;
  logger: Logger;
  /**
   * Called with the complete new settings after the secret changed. Throw (or
   * reject) to refuse them: the error is logged and the service keeps its
   * current configuration.
   */
  onChange(settings: RawSettings): Promise<void> | void;
}

/** Re-reads the config secret on an interval and reports changes. */
export class VaultWatcher {
  readonly #client: VaultClient;
  readonly #options: VaultWatcherOptions;
  readonly #logger: Logger;
  #current: RawSettings;
  #seen: string;
  #lastFailure: string | undefined;
  #rejected = false;
  #timer: NodeJS.Timeout | undefined;
  #running: Promise<void> | undefined;
  #stopped = false;
  #failures: VaultFailureCounter | undefined;

  constructor(start: VaultStart, options: VaultWatcherOptions) {
    this.#client = start.client;
    this.#options = options;
    this.#logger = options.logger.child({ component: 'vault' });
    this.#current = start.settings;
    this.#seen = start.secretFingerprint;
  }

  /** Starts re-reading on the interval; `failures` counts the refreshes that fail or are refused. */
  start(failures?: VaultFailureCounter): void {
    this.#failures = failures;
    this.#schedule();
  }

  /** One read (also used by the timer); never throws. */
  refresh(): Promise<void> {
    this.#running ??= this.#refresh().finally(() => {
      this.#running = undefined;
    });
    return this.#running;
  }

  /** Readiness state: "ok", "stale" (the latest secret was refused), or throws when the last read failed. */
  async check(): Promise<string> {
    if (this.#lastFailure) throw new Error(this.#lastFailure);
    return this.#rejected ? 'stale' : 'ok';
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#timer);
    await this.#running;
    this.#client.close();
  }

  #schedule(): void {
    if (this.#stopped || this.#options.intervalMs <= 0) return;
    this.#timer = setTimeout(() => {
      void this.refresh().then(() => this.#schedule());
    }, this.#options.intervalMs);
    this.#timer.unref();
  }

  async #refresh(): Promise<void> {
    let raw: RawSettings;
    try {
      raw = await this.#read();
    } catch (error) {
      const failure = error instanceof VaultError ? error : new VaultError('unavailable', String(error));
      this.#failures?.inc({ reason: failureReason[failure.kind] });
      if (this.#lastFailure !== failure.message) {
        this.#logger.warn(
          { reason: failure.message, kind: failure.kind },
          'Vault refresh failed; keeping the current configuration',
        );
      }
      this.#lastFailure = failure.message;
      return;
    }
    if (this.#lastFailure) this.#logger.info('Vault refresh works again');
    this.#lastFailure = undefined;
    if (this.#stopped) return;
    const next = fingerprint(raw);
    if (next === this.#seen) return;
    this.#seen = next;
    const settings = settingsFromSecret(raw, this.#client.connection.secretPath, this.#logger);
    const changed = changedKeys(this.#current, settings);
    if (changed.length === 0) {
      this.#rejected = false; // Vault holds what runs again
      return;
    }
    this.#logger.info({ changed }, 'configuration in Vault changed');
    try {
      await this.#options.onChange(settings);
      this.#current = settings;
      this.#rejected = false;
    } catch (error) {
      this.#rejected = true;
      this.#failures?.inc({ reason: failureReason.refused });
      this.#logger.error(
        { reason: error instanceof Error ? error.message : String(error), changed },
        'configuration from Vault refused; keeping the previous configuration',
      );
    }
  }

  async #read(): Promise<RawSettings> {
    try {
      return await this.#client.readSettings();
    } catch (error) {
      // An AppRole token that expired (e.g. while Vault was away) or was revoked: log in again.
      if (error instanceof VaultError && error.kind === 'token-invalid' && this.#client.usesAppRole) {
        await this.#client.relogin();
        return await this.#client.readSettings();
      }
      throw error;
    }
  }
}

/**
 * The "vault" readiness check: "disabled" without Vault, else the watcher's
 * state. Not critical: a Vault outage leaves the service on its current
 * configuration. (Structurally an observability/health.ts HealthCheck.)
 */
export function vaultHealthCheck(watcher: VaultWatcher | undefined): {
  name: string;
  critical: boolean;
  check(): Promise<string>;
} {
  return { name: 'vault', critical: false, check: async () => (watcher ? watcher.check() : 'disabled') };
}

function isVaultSetting(name: string): boolean {
  return vaultSettingNames.has(name);
}

/** Keeps the known keys that are not Vault's own; warns (names only) about the rest. */
function settingsFromSecret(raw: RawSettings, path: string, logger: Logger): RawSettings {
  const known = new Set<string>(settingNames);
  const settings: RawSettings = {};
  const ignored: string[] = [];
  const unknown: string[] = [];
  for (const [key, value] of Object.entries(raw)) {
    if (!known.has(key)) unknown.push(key);
    else if (isVaultSetting(key)) ignored.push(key);
    else settings[key] = value;
  }
  if (ignored.length > 0)
    logger.warn(
      { path, keys: ignored },
      'Vault connection keys in the Vault secret are ignored (they come from the environment)',
    );
  if (unknown.length > 0) logger.warn({ path, keys: unknown }, 'unknown keys in the Vault secret are ignored');
  return settings;
}

function changedKeys(before: RawSettings, after: RawSettings): string[] {
  const keys = new Set([...Object.keys(before), ...Object.keys(after)]);
  return [...keys].filter((key) => before[key] !== after[key]).sort();
}

function fingerprint(settings: RawSettings): string {
  return JSON.stringify(Object.entries(settings).sort(([a], [b]) => a.localeCompare(b)));
}
