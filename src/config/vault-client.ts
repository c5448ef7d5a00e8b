import nodeVault from 'node-vault';
import type { Logger } from '../observability/logger.ts';
import type { RawSettings } from './config.ts';
import { settingsTable } from './settings.ts';

/** How to reach Vault and which secret to read (from the environment only). */
export interface VaultConnection {
  addr: string;
  /** A ready token; when unset, roleId and secretId log in with AppRole. */
  token?: string | undefined;
  roleId?: string | undefined;
  secretId?: string | undefined;
  /** KV v2 API path, e.g. `secret/data/job-manager`. */
  secretPath: string;
}

/**
 * What went wrong talking to Vault. `retryable` failures (network, 5xx, 429,
 * a secret not written yet) are worth another try; the others (403, a failed
 * AppRole login, a malformed secret) are not. The message never carries a
 * token or secret id: the underlying HTTP error (whose request config holds
 * them) is deliberately not kept as `cause`.
 */
const v = settingsTable.vault;

export class VaultError extends Error {
  override name = 'VaultError';
  readonly kind: 'unavailable' | 'not-found' | 'forbidden' | 'login-failed' | 'invalid-secret' | 'rejected';
  readonly retryable: boolean;
  constructor(kind: VaultError['kind'], message: string) {
    super(message);
    this.kind = kind;
    this.retryable = kind === 'unavailable' || kind === 'not-found';
  }
}

export interface VaultClientOptions {
  /** Timeout of one HTTP request to Vault (default 5 s). */
  requestTimeoutMs?: number;
}

/** Renew a token when this fraction of its lease has passed. */
const renewAtFraction = 2 / 3;
const reloginRetryMs = 5_000;

/**
 * A session with Vault over node-vault: authenticates (static token or AppRole
 * login), reads the KV v2 config secret, and keeps the token alive (renew-self
 * before the lease ends; with AppRole, a new login when renewal fails or the
 * token reaches its maximum TTL).
 */
export class VaultClient {
  readonly connection: VaultConnection;
  readonly #vault: nodeVault.client;
  readonly #logger: Logger;
  readonly #requestTimeoutMs: number;
  #loggedIn = false;
  #loginLeaseSeconds = 0;
  #renewTimer: NodeJS.Timeout | undefined;
  #closed = false;

  constructor(connection: VaultConnection, logger: Logger, options: VaultClientOptions = {}) {
    if (!connection.token && !(connection.roleId && connection.secretId)) {
      throw new VaultError('login-failed', `neither ${v.token.env} nor ${v.roleId.env}/${v.secretId.env} is set`);
    }
    this.connection = connection;
    this.#logger = logger.child({ component: 'vault' });
    this.#requestTimeoutMs = options.requestTimeoutMs ?? 5_000;
    this.#vault = nodeVault({ endpoint: connection.addr });
    // Set after construction: node-vault would fall back to its own environment variable for the token.
    this.#vault.token = connection.token ?? '';
  }

  get usesAppRole(): boolean {
    return !this.connection.token;
  }

  /** Logs in with AppRole if that is the method and there is no token yet. */
  async authenticate(timeoutMs = this.#requestTimeoutMs): Promise<void> {
    if (this.usesAppRole && !this.#loggedIn) await this.#login(timeoutMs);
  }

  /**
   * Reads the config secret: `data.data` of the KV v2 response, every value
   * as a string (numbers and booleans stringified, null dropped).
   */
  async readSettings(timeoutMs = this.#requestTimeoutMs): Promise<RawSettings> {
    const path = this.connection.secretPath;
    let body: any;
    try {
      body = await this.#vault.read(path, { timeout: timeoutMs });
    } catch (error) {
      throw toVaultError(error, `reading ${path}`);
    }
    const data = body?.data?.data;
    if (!isPlainObject(data) || !isPlainObject(body?.data?.metadata)) {
      throw new VaultError(
        'invalid-secret',
        `${path} is not a KV v2 secret (expected data.data and data.metadata; the path of a KV v2 secret "job-manager" on mount "secret" is secret/data/job-manager)`,
      );
    }
    const settings: RawSettings = {};
    for (const [key, value] of Object.entries(data)) {
      if (value === null || value === undefined) continue;
      if (typeof value === 'string') settings[key] = value;
      else if (typeof value === 'number' || typeof value === 'boolean') settings[key] = String(value);
      else throw new VaultError('invalid-secret', `${key} in ${path} must be a string or a number`);
    }
    return settings;
  }

  /**
   * Starts keeping a static token alive when it has a TTL and is renewable
   * (looked up with lookup-self; best effort, a denied lookup only logs).
   * AppRole tokens are already renewed from their login.
   */
  async keepTokenAlive(): Promise<void> {
    if (this.usesAppRole || this.#closed) return;
    try {
      const result = await this.#vault.tokenLookupSelf({ requestOptions: { timeout: this.#requestTimeoutMs } });
      const ttl = Number(result?.data?.ttl ?? 0);
      if (result?.data?.renewable && ttl > 0) this.#scheduleRenewal(ttl);
    } catch (error) {
      this.#logger.debug({ reason: toVaultError(error, 'looking up the token').message }, 'vault token lookup failed');
    }
  }

  /** After a 403 with AppRole the token may have expired: log in again. */
  async relogin(): Promise<void> {
    this.#loggedIn = false;
    await this.#login(this.#requestTimeoutMs);
  }

  /** Stops renewal timers; the client makes no further requests of its own. */
  close(): void {
    this.#closed = true;
    clearTimeout(this.#renewTimer);
  }

  async #login(timeoutMs: number): Promise<void> {
    let result: any;
    try {
      result = await this.#vault.approleLogin({
        role_id: this.connection.roleId,
        secret_id: this.connection.secretId,
        requestOptions: { timeout: timeoutMs },
      });
    } catch (error) {
      throw toVaultError(error, 'logging in with AppRole', true);
    }
    if (typeof result?.auth?.client_token !== 'string') {
      throw new VaultError('login-failed', 'AppRole login answered without auth.client_token');
    }
    // node-vault stores auth.client_token as its token (tokenSource).
    this.#loggedIn = true;
    this.#loginLeaseSeconds = Number(result.auth.lease_duration ?? 0);
    this.#logger.info({ leaseSeconds: this.#loginLeaseSeconds }, 'logged in to Vault with AppRole');
    if (result.auth.renewable && this.#loginLeaseSeconds > 0) this.#scheduleRenewal(this.#loginLeaseSeconds);
  }

  #scheduleRenewal(leaseSeconds: number): void {
    clearTimeout(this.#renewTimer);
    if (this.#closed) return;
    const delayMs = Math.max(250, leaseSeconds * 1_000 * renewAtFraction);
    this.#renewTimer = setTimeout(() => void this.#renew(), delayMs);
    this.#renewTimer.unref();
  }

  async #renew(): Promise<void> {
    if (this.#closed) return;
    try {
      const result = await this.#vault.tokenRenewSelf({ requestOptions: { timeout: this.#requestTimeoutMs } });
      const lease = Number(result?.auth?.lease_duration ?? 0);
      const renewable = result?.auth?.renewable !== false;
      this.#logger.debug({ leaseSeconds: lease }, 'vault token renewed');
      if (this.usesAppRole && (!renewable || lease < this.#loginLeaseSeconds / 2)) {
        // Renewal no longer extends the token (max TTL near): get a fresh one.
        await this.#reloginInBackground('the token reached its maximum TTL');
      } else if (renewable && lease > 0) {
        this.#scheduleRenewal(lease);
      }
    } catch (error) {
      const reason = toVaultError(error, 'renewing the token').message;
      if (this.usesAppRole) await this.#reloginInBackground(`renewal failed: ${reason}`);
      else this.#logger.warn({ reason }, 'vault token renewal failed; the token will expire');
    }
  }

  async #reloginInBackground(why: string): Promise<void> {
    if (this.#closed) return;
    this.#logger.info({ reason: why }, 'logging in to Vault again');
    try {
      await this.relogin();
    } catch (error) {
      const reason = error instanceof VaultError ? error.message : String(error);
      this.#logger.warn({ reason, retryInMs: reloginRetryMs }, 'vault AppRole login failed');
      clearTimeout(this.#renewTimer);
      if (this.#closed) return;
      this.#renewTimer = setTimeout(() => void this.#reloginInBackground(why), reloginRetryMs);
      this.#renewTimer.unref();
    }
  }
}

/** Turns a node-vault/axios failure into a VaultError with a safe message. */
function toVaultError(error: unknown, action: string, isLogin = false): VaultError {
  if (error instanceof VaultError) return error;
  const status = (error as { response?: { statusCode?: unknown } })?.response?.statusCode;
  if (typeof status === 'number') {
    // node-vault's message is Vault's errors[0], or "Status <n>".
    const detail =
      (error as Error).message && !/^Status \d+$/.test((error as Error).message) ? `: ${(error as Error).message}` : '';
    if (isLogin && (status === 400 || status === 401 || status === 403)) {
      return new VaultError(
        'login-failed',
        `AppRole login failed (HTTP ${status}${detail}); check ${v.roleId.env}/${v.secretId.env}`,
      );
    }
    if (status === 403) return new VaultError('forbidden', `permission denied ${action} (HTTP 403)`);
    if (status === 404) return new VaultError('not-found', `nothing found ${action} (HTTP 404)`);
    if (status === 429 || status >= 500)
      return new VaultError('unavailable', `${action} failed with HTTP ${status}${detail}`);
    return new VaultError('rejected', `${action} failed with HTTP ${status}${detail}`);
  }
  return new VaultError('unavailable', networkReason(error));
}

function networkReason(error: unknown): string {
  if (!(error instanceof Error)) return String(error);
  const code = (error as { code?: unknown }).code;
  const nested = (error as { errors?: unknown }).errors ?? (error.cause as { errors?: unknown } | undefined)?.errors;
  const first = Array.isArray(nested) && nested[0] instanceof Error ? nested[0].message : '';
  const message = error.message || first || (error.cause instanceof Error ? error.cause.message : '');
  if (message && typeof code === 'string' && !message.includes(code)) return `${message} (${code})`;
  return message || (typeof code === 'string' ? code : 'network error');
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
