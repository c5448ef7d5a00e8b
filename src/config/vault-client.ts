import { createRequire } from 'node:module';
import type nodeVault from 'node-vault';
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

const v = settingsTable.vault;

// node-vault (with its HTTP client) is loaded when a VaultClient is made, i.e. only when Vault is configured.
const require = createRequire(import.meta.url);
const loadNodeVault = () => require('node-vault') as typeof nodeVault;

/**
 * What went wrong talking to Vault:
 * - `unavailable`: network, 5xx but a seal, 429; `sealed`: 503 "Vault is sealed";
 * - `not-found`: no secret at the path, or its latest version deleted or destroyed;
 * - `forbidden`: a valid token whose policies do not grant "read" on the path;
 * - `token-invalid`: the token itself is refused (revoked, expired, unknown to this Vault);
 * - `login-failed`, `invalid-secret` (not a KV v2 secret of strings), `rejected` (any other 4xx).
 * `retryable` failures (unavailable, sealed, not-found) are worth another try
 * at start; the others are not. The message never carries a token or secret
 * id: the underlying HTTP error (whose request config holds them) is
 * deliberately not kept as `cause`.
 */
export class VaultError extends Error {
  override name = 'VaultError';
  readonly kind:
    | 'unavailable'
    | 'sealed'
    | 'not-found'
    | 'forbidden'
    | 'token-invalid'
    | 'login-failed'
    | 'invalid-secret'
    | 'rejected';
  readonly retryable: boolean;
  constructor(kind: VaultError['kind'], message: string) {
    super(message);
    this.kind = kind;
    this.retryable = kind === 'unavailable' || kind === 'sealed' || kind === 'not-found';
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
  /** Epoch ms at which the current token's lease ends (0: unknown or never). */
  #leaseEndsAt = 0;
  #renewTimer: NodeJS.Timeout | undefined;
  #lastBackgroundFailure: string | undefined;
  #closed = false;

  constructor(connection: VaultConnection, logger: Logger, options: VaultClientOptions = {}) {
    if (!connection.token && !(connection.roleId && connection.secretId)) {
      throw new VaultError('login-failed', `neither ${v.token.env} nor ${v.roleId.env}/${v.secretId.env} is set`);
    }
    this.connection = connection;
    this.#logger = logger.child({ component: 'vault' });
    this.#requestTimeoutMs = options.requestTimeoutMs ?? 5_000;
    this.#vault = loadNodeVault()({ endpoint: connection.addr });
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
      const failure = readFailure(error, path);
      throw failure.kind === 'forbidden' ? await this.#explainForbidden(path, timeoutMs) : failure;
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

  /**
   * A read answered 403: either the token's policies do not grant "read" on
   * the path, or the token itself is gone (revoked, expired, a Vault that
   * restarted empty). Vault answers both with the same "permission denied";
   * lookup-self (granted by the service's policy) tells them apart.
   */
  async #explainForbidden(path: string, timeoutMs: number): Promise<VaultError> {
    try {
      await this.#vault.tokenLookupSelf({ requestOptions: { timeout: timeoutMs } });
    } catch (error) {
      const lookup = toVaultError(error, 'looking up the token');
      if (lookup.kind === 'forbidden') {
        const remedy = this.usesAppRole ? 'logging in again' : `set a new ${v.token.env} and restart`;
        return new VaultError(
          'token-invalid',
          `the Vault token is no longer valid (revoked, expired, or unknown to this Vault): reading ${path} and lookup-self answer HTTP 403; ${remedy}`,
        );
      }
    }
    return new VaultError(
      'forbidden',
      `permission denied reading ${path} (HTTP 403): the token's policies do not grant the "read" capability on ${path}`,
    );
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
    this.#lastBackgroundFailure = undefined;
    this.#loginLeaseSeconds = Number(result.auth.lease_duration ?? 0);
    this.#logger.info({ leaseSeconds: this.#loginLeaseSeconds }, 'logged in to Vault with AppRole');
    if (result.auth.renewable && this.#loginLeaseSeconds > 0) this.#scheduleRenewal(this.#loginLeaseSeconds);
  }

  #scheduleRenewal(leaseSeconds: number): void {
    this.#leaseEndsAt = Date.now() + leaseSeconds * 1_000;
    this.#renewIn(Math.max(250, leaseSeconds * 1_000 * renewAtFraction));
  }

  #renewIn(delayMs: number): void {
    clearTimeout(this.#renewTimer);
    if (this.#closed) return;
    this.#renewTimer = setTimeout(() => void this.#renew(), delayMs);
    this.#renewTimer.unref();
  }

  async #renew(): Promise<void> {
    if (this.#closed) return;
    try {
      const result = await this.#vault.tokenRenewSelf({ requestOptions: { timeout: this.#requestTimeoutMs } });
      const lease = Number(result?.auth?.lease_duration ?? 0);
      const renewable = result?.auth?.renewable !== false;
      this.#lastBackgroundFailure = undefined;
      this.#logger.debug({ leaseSeconds: lease }, 'vault token renewed');
      if (this.usesAppRole && (!renewable || lease <= this.#loginLeaseSeconds / 2)) {
        // Renewal no longer extends the token (max TTL near): get a fresh one.
        await this.#reloginInBackground('the token reached its maximum TTL');
      } else if (renewable && lease > 0) {
        this.#scheduleRenewal(lease);
      }
    } catch (error) {
      const failure = toVaultError(error, 'renewing the token');
      if (this.usesAppRole) await this.#reloginInBackground(`renewal failed: ${failure.message}`);
      else if (failure.retryable) {
        // Vault away or sealed: try again, sooner as the lease nears its end, so a short outage does not cost the token.
        const retryInMs = Math.min(reloginRetryMs, Math.max(250, (this.#leaseEndsAt - Date.now()) / 3));
        if (failure.message !== this.#lastBackgroundFailure) {
          this.#logger.warn({ reason: failure.message, retryInMs }, 'vault token renewal failed; retrying');
        }
        this.#lastBackgroundFailure = failure.message;
        this.#renewIn(retryInMs);
      } else {
        this.#logger.error(
          { reason: failure.message },
          `vault token renewal refused; ${v.token.env} will expire: set a new one and restart`,
        );
      }
    }
  }

  async #reloginInBackground(why: string, retry = false): Promise<void> {
    if (this.#closed) return;
    if (!retry) this.#logger.info({ reason: why }, 'logging in to Vault again');
    try {
      await this.relogin();
    } catch (error) {
      const reason = error instanceof VaultError ? error.message : String(error);
      // Once per reason, not every retry: Vault may stay away for long.
      if (reason !== this.#lastBackgroundFailure) {
        this.#logger.warn({ reason, retryInMs: reloginRetryMs }, 'vault AppRole login failed; retrying');
      }
      this.#lastBackgroundFailure = reason;
      clearTimeout(this.#renewTimer);
      if (this.#closed) return;
      this.#renewTimer = setTimeout(() => void this.#reloginInBackground(why, true), reloginRetryMs);
      this.#renewTimer.unref();
    }
  }
}

/**
 * A failed KV v2 read: a 404 that still carries the secret's metadata means
 * its latest version was deleted (`vault kv delete`) or destroyed (`vault kv
 * destroy`), which an operator should hear as such.
 */
function readFailure(error: unknown, path: string): VaultError {
  const response = (error as { response?: { statusCode?: unknown; body?: any } })?.response;
  const metadata = response?.statusCode === 404 ? response.body?.data?.metadata : undefined;
  if (isPlainObject(metadata)) {
    const version = typeof metadata.version === 'number' ? ` (version ${metadata.version})` : '';
    const what = metadata.destroyed === true ? 'destroyed' : 'deleted';
    return new VaultError(
      'not-found',
      `the latest version${version} of ${path} is ${what} (HTTP 404); ${what === 'deleted' ? 'undelete it or ' : ''}write a new version`,
    );
  }
  if (response?.statusCode === 404) {
    return new VaultError('not-found', `no secret at ${path} (HTTP 404); write it first (see deploy/vault/init.sh)`);
  }
  return toVaultError(error, `reading ${path}`);
}

/** Turns a node-vault/axios failure into a VaultError with a safe message. */
function toVaultError(error: unknown, action: string, isLogin = false): VaultError {
  if (error instanceof VaultError) return error;
  const status = (error as { response?: { statusCode?: unknown } })?.response?.statusCode;
  if (typeof status === 'number') {
    const text = vaultErrorText(error);
    const detail = text ? `: ${text}` : '';
    if (isLogin && (status === 400 || status === 401 || status === 403)) {
      return new VaultError(
        'login-failed',
        `AppRole login failed (HTTP ${status}${detail}); check ${v.roleId.env}/${v.secretId.env}`,
      );
    }
    if (status === 403) return new VaultError('forbidden', `permission denied ${action} (HTTP 403)`);
    if (status === 404) return new VaultError('not-found', `nothing found ${action} (HTTP 404)`);
    if (status === 503 && /sealed/i.test(detail))
      return new VaultError('sealed', `${action} failed with HTTP 503${detail} (unseal it)`);
    if (status === 429 || status >= 500)
      return new VaultError('unavailable', `${action} failed with HTTP ${status}${detail}`);
    return new VaultError('rejected', `${action} failed with HTTP ${status}${detail}`);
  }
  return new VaultError('unavailable', networkReason(error));
}

/**
 * Vault's `errors` of a failed response on one line, or '' when it gave none.
 * A Go multierror ("2 errors occurred:\n\t* permission denied\n\t* invalid
 * token\n\n", what a request with a dead token to an unmounted path gets)
 * reads "permission denied; invalid token": a log line stays one line.
 */
function vaultErrorText(error: unknown): string {
  const errors = (error as { response?: { body?: { errors?: unknown } } })?.response?.body?.errors;
  // node-vault's own message is errors[0], or "Status <n>" without errors.
  const message = (error as Error).message ?? '';
  const texts = Array.isArray(errors)
    ? errors.filter((each): each is string => typeof each === 'string')
    : /^Status \d+$/.test(message)
      ? []
      : [message];
  return texts
    .flatMap((text) => text.replace(/^\d+ errors? occurred:/, '').split('\n'))
    .map((part) => part.replace(/^\s*\*\s*/, '').trim())
    .filter(Boolean)
    .join('; ');
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
