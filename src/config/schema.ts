import { z } from 'zod';
import { hostProblem, parseTrustProxy } from './network.ts';

/**
 * Every setting the service reads, by its environment name (Vault keys mirror
 * them). Values arrive as strings from the environment or Vault and are coerced
 * here; an empty string counts as unset.
 */
const blankAsUnset = (value: unknown) => (value === '' ? undefined : value);
const optionalString = z.preprocess(blankAsUnset, z.string().optional());
const url = (protocols: string[]) =>
  z.preprocess(
    blankAsUnset,
    z
      .string()
      .superRefine((value, ctx) => {
        if (!URL.canParse(value)) ctx.addIssue({ code: 'custom', message: 'must be a URL' });
        else if (!protocols.includes(new URL(value).protocol))
          ctx.addIssue({
            code: 'custom',
            message: `must use ${protocols.map((p) => p.replace(':', '')).join(' or ')}`,
          });
      })
      .optional(),
  );
const int = (min: number, max: number, fallback: number) =>
  z.preprocess(blankAsUnset, z.coerce.number().int().min(min).max(max).default(fallback));

export const settingsSchema = z.object({
  PORT: int(0, 65535, 8080),
  DATABASE_URL: url(['postgres:', 'postgresql:']),
  DATA_DIR: z.preprocess(blankAsUnset, z.string().default('.data')),
  INSTANCE_ID: optionalString,
  FETCH_INTERVAL_MS: int(100, 3_600_000, 10_000),
  WORKER_COUNT: int(1, 100, 5),
  MESSAGE_MAX_LENGTH: int(1, 10_000, 160),
  WEBHOOK_URL: url(['http:', 'https:']),
  WEBHOOK_AUTH_HEADER: z.preprocess(
    blankAsUnset,
    z
      .string()
      .regex(/^[A-Za-z0-9!#$%&'*+.^_`|~-]+$/, 'must be a valid HTTP header name')
      .optional(),
  ),
  WEBHOOK_AUTH_VALUE: optionalString,
  WEBHOOK_TIMEOUT_MS: int(100, 120_000, 5_000),
  WEBHOOK_MAX_ATTEMPTS: int(1, 100, 5),
  WEBHOOK_CONCURRENCY: int(1, 256, 10),
  WEBHOOK_RETRY_BASE_MS: int(1, 3_600_000, 1_000),
  WEBHOOK_RETRY_MAX_MS: int(1, 86_400_000, 300_000),
  REDIS_URL: url(['redis:', 'rediss:']),
  REDIS_TTL_SECONDS: int(1, 31_536_000, 604_800),
  VAULT_ADDR: url(['http:', 'https:']),
  VAULT_TOKEN: optionalString,
  VAULT_ROLE_ID: optionalString,
  VAULT_SECRET_ID: optionalString,
  VAULT_SECRET_PATH: z.preprocess(blankAsUnset, z.string().default('secret/data/job-manager')),
  VAULT_START_TIMEOUT_MS: int(0, 600_000, 30_000),
  VAULT_REFRESH_SECONDS: int(0, 86_400, 60),
  LOKI_URL: url(['http:', 'https:']),
  LOG_LEVEL: z.preprocess(
    blankAsUnset,
    z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  ),
  API_KEYS: optionalString,
  /** Listen address; unset: 127.0.0.1 without API_KEYS, 0.0.0.0 with them (see config.ts). */
  HOST: z.preprocess(
    blankAsUnset,
    z
      .string()
      .superRefine((value, ctx) => {
        const problem = hostProblem(value);
        if (problem) ctx.addIssue({ code: 'custom', message: problem });
      })
      .optional(),
  ),
  /** `true` lets a non-loopback HOST run without API_KEYS (an explicit choice to be open). */
  ALLOW_UNAUTHENTICATED: z.preprocess(
    blankAsUnset,
    z
      .enum(['true', 'false'], { message: 'must be true or false' })
      .default('false')
      .transform((value) => value === 'true'),
  ),
  /** express `trust proxy`: unset/false, true, a hop count, or IPs/CIDRs (network.ts parseTrustProxy). */
  TRUST_PROXY: z.preprocess(
    blankAsUnset,
    z
      .string()
      .optional()
      .transform((value, ctx) => {
        try {
          return parseTrustProxy(value);
        } catch (error) {
          ctx.addIssue({ code: 'custom', message: (error as Error).message });
          return z.NEVER;
        }
      }),
  ),
  RATE_LIMIT_PER_MINUTE: int(0, 1_000_000, 0),
  JOB_LEASE_SECONDS: int(1, 3_600, 30),
  MESSAGE_LEASE_SECONDS: int(1, 3_600, 60),
  SHUTDOWN_TIMEOUT_MS: int(0, 600_000, 25_000),
});

export type Settings = z.infer<typeof settingsSchema>;
export type SettingName = keyof Settings;
export const settingNames = Object.keys(settingsSchema.shape) as SettingName[];

/** Settings whose value must never reach a log line or an HTTP response. */
export const secretSettings: readonly SettingName[] = [
  'DATABASE_URL',
  'WEBHOOK_AUTH_VALUE',
  'REDIS_URL',
  'VAULT_TOKEN',
  'VAULT_SECRET_ID',
  'API_KEYS',
  'RATE_LIMIT_PER_MINUTE',
];

/** Settings that are applied while the service runs; the rest need a restart. */
export const liveSettings: readonly SettingName[] = [
  'WORKER_COUNT',
  'FETCH_INTERVAL_MS',
  'MESSAGE_MAX_LENGTH',
  'WEBHOOK_URL',
  'WEBHOOK_AUTH_HEADER',
  'WEBHOOK_AUTH_VALUE',
  'WEBHOOK_TIMEOUT_MS',
  'WEBHOOK_MAX_ATTEMPTS',
  'WEBHOOK_CONCURRENCY',
  'WEBHOOK_RETRY_BASE_MS',
  'WEBHOOK_RETRY_MAX_MS',
  'LOG_LEVEL',
  'API_KEYS',
  'RATE_LIMIT_PER_MINUTE',
];
