import { hostname } from 'node:os';
import { withoutCredentials } from '../observability/safe-url.ts';
import { isLoopbackHost, type TrustProxy } from './network.ts';
import {
  liveSettings,
  type SettingName,
  type Settings,
  secretSettings,
  settingNames,
  settingsSchema,
} from './schema.ts';

/** The typed configuration handed down from main.ts; nothing else reads process.env. */
export interface Config {
  port: number;
  /** Unset: the service runs its own embedded PostgreSQL under dataDir. */
  databaseUrl: string | undefined;
  dataDir: string;
  instanceId: string;
  fetchIntervalMs: number;
  workerCount: number;
  messageMaxLength: number;
  webhook: {
    /** Unset: dry-run delivery. */
    url: string | undefined;
    authHeader: string | undefined;
    authValue: string | undefined;
    timeoutMs: number;
    maxAttempts: number;
    concurrency: number;
    retryBaseMs: number;
    retryMaxMs: number;
  };
  redis: { url: string | undefined; ttlSeconds: number };
  vault: {
    addr: string | undefined;
    token: string | undefined;
    roleId: string | undefined;
    secretId: string | undefined;
    secretPath: string;
    startTimeoutMs: number;
    refreshSeconds: number;
  };
  lokiUrl: string | undefined;
  logLevel: Settings['LOG_LEVEL'];
  apiKeys: string[];
  /** Listen address: HOST, else 127.0.0.1 without API keys and 0.0.0.0 with them. */
  host: string;
  /** ALLOW_UNAUTHENTICATED: a non-loopback host may run without API keys. */
  allowUnauthenticated: boolean;
  /** express `trust proxy` (TRUST_PROXY): whose X-Forwarded-For names the client. */
  trustProxy: TrustProxy;
  /** Message intake requests per client and minute on each pod; 0: no limit. */
  intakeRateLimitPerMinute: number;
  jobLeaseSeconds: number;
  messageLeaseSeconds: number;
  shutdownTimeoutMs: number;
}

export type RawSettings = Partial<Record<string, string | undefined>>;

export class ConfigError extends Error {
  readonly key: string;
  constructor(key: string, reason: string) {
    super(`Invalid configuration: ${key} ${reason}`);
    this.name = 'ConfigError';
    this.key = key;
  }
}

/** Picks the known setting names out of an environment-like object. */
export function pickSettings(source: RawSettings): Partial<Record<SettingName, string>> {
  const picked: Partial<Record<SettingName, string>> = {};
  for (const name of settingNames) {
    const value = source[name];
    if (value !== undefined) picked[name] = String(value);
  }
  return picked;
}

/**
 * The settings whose effective value differs between two layerings and that
 * the running service cannot apply (everything not in `liveSettings`).
 */
export function settingsNeedingRestart(
  env: RawSettings,
  previousVault: RawSettings,
  nextVault: RawSettings,
): SettingName[] {
  const before = { ...pickSettings(env), ...pickSettings(previousVault) };
  const after = { ...pickSettings(env), ...pickSettings(nextVault) };
  return settingNames.filter((name) => before[name] !== after[name] && !liveSettings.includes(name));
}

/**
 * Merges the layers (later wins: defaults < environment < Vault) and validates
 * the result. Throws ConfigError naming the first offending key.
 */
export function resolveConfig(env: RawSettings, vault: RawSettings = {}): Config {
  const merged = { ...pickSettings(env), ...pickSettings(vault) };
  const parsed = settingsSchema.safeParse(merged);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const key = String(issue?.path[0] ?? 'configuration');
    const value = merged[key as SettingName];
    // Secret settings are never shown; URLs lose their user:password part.
    const shownValue =
      secretSettings.includes(key as SettingName) || value === undefined ? undefined : withoutCredentials(value);
    throw new ConfigError(key, describeIssue(issue?.message, shownValue));
  }
  const s = parsed.data;
  if (s.VAULT_ADDR && !s.VAULT_TOKEN && !(s.VAULT_ROLE_ID && s.VAULT_SECRET_ID)) {
    throw new ConfigError('VAULT_ADDR', 'is set but neither VAULT_TOKEN nor VAULT_ROLE_ID/VAULT_SECRET_ID is');
  }
  // A chunk of sends must finish well inside its lease, or another pod could take the messages over mid-send.
  if (s.MESSAGE_LEASE_SECONDS * 1000 < 2 * s.WEBHOOK_TIMEOUT_MS) {
    throw new ConfigError(
      'MESSAGE_LEASE_SECONDS',
      `must be at least twice WEBHOOK_TIMEOUT_MS (${s.MESSAGE_LEASE_SECONDS} s < 2 × ${s.WEBHOOK_TIMEOUT_MS} ms)`,
    );
  }
  if (Boolean(s.WEBHOOK_AUTH_HEADER) !== Boolean(s.WEBHOOK_AUTH_VALUE)) {
    throw new ConfigError('WEBHOOK_AUTH_HEADER', 'and WEBHOOK_AUTH_VALUE must be set together');
  }
  const config = toConfig(s);
  const openProblem = unauthenticatedExposure(config);
  if (openProblem) throw new ConfigError('HOST', openProblem);
  return config;
}

/**
 * Why this configuration would serve the API without authentication to the
 * network, or undefined when it does not: a HOST that is not a loopback
 * address with no API_KEYS and no ALLOW_UNAUTHENTICATED=true.
 */
export function unauthenticatedExposure(
  config: Pick<Config, 'host' | 'apiKeys' | 'allowUnauthenticated'>,
): string | undefined {
  if (config.apiKeys.length > 0 || config.allowUnauthenticated || isLoopbackHost(config.host)) return undefined;
  return (
    `is ${config.host}, which is reachable from the network, but API_KEYS is not set: ` +
    'anyone could send messages. Set API_KEYS, bind HOST to 127.0.0.1, or set ALLOW_UNAUTHENTICATED=true to run open on purpose'
  );
}

function describeIssue(message: string | undefined, value: string | undefined): string {
  const shown =
    value === undefined ? '' : ` (got ${JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}…` : value)})`;
  return `${(message ?? 'is invalid').replace(/^Invalid input: /, '')}${shown}`;
}

function toConfig(s: Settings): Config {
  const apiKeys = (s.API_KEYS ?? '')
    .split(',')
    .map((key) => key.trim())
    .filter(Boolean);
  return {
    port: s.PORT,
    databaseUrl: s.DATABASE_URL,
    dataDir: s.DATA_DIR,
    instanceId: s.INSTANCE_ID ?? `${hostname()}-${process.pid}`,
    fetchIntervalMs: s.FETCH_INTERVAL_MS,
    workerCount: s.WORKER_COUNT,
    messageMaxLength: s.MESSAGE_MAX_LENGTH,
    webhook: {
      url: s.WEBHOOK_URL,
      authHeader: s.WEBHOOK_AUTH_HEADER,
      authValue: s.WEBHOOK_AUTH_VALUE,
      timeoutMs: s.WEBHOOK_TIMEOUT_MS,
      maxAttempts: s.WEBHOOK_MAX_ATTEMPTS,
      concurrency: s.WEBHOOK_CONCURRENCY,
      retryBaseMs: s.WEBHOOK_RETRY_BASE_MS,
      retryMaxMs: s.WEBHOOK_RETRY_MAX_MS,
    },
    redis: { url: s.REDIS_URL, ttlSeconds: s.REDIS_TTL_SECONDS },
    vault: {
      addr: s.VAULT_ADDR,
      token: s.VAULT_TOKEN,
      roleId: s.VAULT_ROLE_ID,
      secretId: s.VAULT_SECRET_ID,
      secretPath: s.VAULT_SECRET_PATH,
      startTimeoutMs: s.VAULT_START_TIMEOUT_MS,
      refreshSeconds: s.VAULT_REFRESH_SECONDS,
    },
    lokiUrl: s.LOKI_URL,
    logLevel: s.LOG_LEVEL,
    apiKeys,
    host: s.HOST ?? (apiKeys.length > 0 ? '0.0.0.0' : '127.0.0.1'),
    allowUnauthenticated: s.ALLOW_UNAUTHENTICATED,
    trustProxy: s.TRUST_PROXY,
    intakeRateLimitPerMinute: s.RATE_LIMIT_PER_MINUTE,
    jobLeaseSeconds: s.JOB_LEASE_SECONDS,
    messageLeaseSeconds: s.MESSAGE_LEASE_SECONDS,
    shutdownTimeoutMs: s.SHUTDOWN_TIMEOUT_MS,
  };
}
