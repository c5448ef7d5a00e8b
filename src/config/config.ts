import { withoutCredentials } from '../observability/safe-url.ts';
import type { TracingOptions } from '../observability/tracing.ts';
import {
  type Config,
  crossSettingRules,
  liveSettings,
  parseSettings,
  secretSettings,
  settingNames,
} from './settings.ts';

export type { Config } from './settings.ts';

/** Raw settings as strings, keyed by environment name (the environment, a Vault secret). */
export type RawSettings = Partial<Record<string, string | undefined>>;

export class ConfigError extends Error {
  /** The environment name of the offending setting. */
  readonly key: string;
  constructor(key: string, reason: string) {
    super(`Invalid configuration: ${key} ${reason}`);
    this.name = 'ConfigError';
    this.key = key;
  }
}

/** Picks the known setting names out of an environment-like object. */
export function pickSettings(source: RawSettings): Record<string, string> {
  const picked: Record<string, string> = {};
  for (const name of settingNames) {
    const value = source[name];
    if (value !== undefined) picked[name] = String(value);
  }
  return picked;
}

/**
 * The settings whose effective value differs between two layerings and that
 * the running service cannot apply (the table's `restart` settings).
 */
export function settingsNeedingRestart(env: RawSettings, previousVault: RawSettings, nextVault: RawSettings): string[] {
  const before = { ...pickSettings(env), ...pickSettings(previousVault) };
  const after = { ...pickSettings(env), ...pickSettings(nextVault) };
  return settingNames.filter((name) => before[name] !== after[name] && !liveSettings.includes(name));
}

/**
 * Merges the layers (later wins: defaults < environment < Vault) and validates
 * the result, every cross-setting rule included.
 * @throws ConfigError naming the first offending key (never echoing a secret value)
 */
export function resolveConfig(env: RawSettings, vault: RawSettings = {}): Config {
  return validateRaw({ ...pickSettings(env), ...pickSettings(vault) });
}

/** Validates already-merged raw settings. @throws ConfigError */
export function validateRaw(merged: Record<string, string>): Config {
  const parsed = parseSettings(merged);
  if (!parsed.ok) {
    const value = merged[parsed.key];
    // Secret settings are never shown; URLs lose their user:password part.
    const shownValue =
      secretSettings.includes(parsed.key) || value === undefined ? undefined : withoutCredentials(value);
    throw new ConfigError(parsed.key, describeIssue(parsed.message, shownValue));
  }
  for (const rule of crossSettingRules) {
    const broken = rule(parsed.config);
    if (broken) throw new ConfigError(broken.key, broken.reason);
  }
  return parsed.config;
}

function describeIssue(message: string, value: string | undefined): string {
  const shown =
    value === undefined ? '' : ` (got ${JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}…` : value)})`;
  return `${message.replace(/^Invalid input: /, '')}${shown}`;
}

/**
 * The tracing options of `config` (the OpenTelemetry settings): the traces URL
 * is the traces endpoint as is, else the general endpoint plus `/v1/traces`,
 * else none (nothing exported); the traces protocol falls back to the general one.
 */
export function tracingOptions(config: Config): TracingOptions {
  const { otel } = config;
  const base = otel.endpoint?.replace(/\/+$/, '');
  return {
    tracesUrl: otel.tracesEndpoint ?? (base === undefined ? undefined : `${base}/v1/traces`),
    protocol: otel.tracesProtocol ?? otel.protocol,
    headers: { ...otel.headers },
    serviceName: otel.serviceName,
    resourceAttributes: { ...otel.resourceAttributes },
    sampler: otel.sampler,
    samplerRatio: otel.samplerArg,
    batchDelayMs: otel.batchDelayMs,
  };
}
