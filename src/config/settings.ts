import { hostname } from 'node:os';
import { z } from 'zod';
import { hostProblem, isLoopbackHost, listenHost, parseTrustProxy, type TrustProxy } from './network.ts';

/**
 * THE settings table: every setting the service reads, declared once, by its
 * environment name (Vault keys mirror them). Everything else derives from it:
 * the validation, the typed `Config` (the table's shape, with each setting's
 * parsed value), the secret list and log redaction, the live/restart split,
 * the "needs restart" report and the configuration page, docs/configuration.md
 * (`npm run docs:config`; a test fails when the page disagrees).
 *
 * Values arrive as strings (environment, Vault) and are parsed here; an empty
 * string counts as unset.
 */

/** `live`: applied while running (a Vault change takes effect); `restart`: read at start only. */
export type Apply = 'live' | 'restart';

export interface Setting<T = unknown> {
  /** Environment variable name; the Vault secret uses the same key. */
  readonly env: string;
  readonly schema: z.ZodType<T>;
  /** The default as docs/configuration.md shows it (`undefined`: unset). */
  readonly shownDefault: string | undefined;
  readonly apply: Apply;
  /** Never logged, never echoed in an error. */
  readonly secret: boolean;
  readonly doc: string;
}

interface Declaration {
  apply: Apply;
  doc: string;
  secret?: boolean;
}

const blankAsUnset = (value: unknown) => (value === '' ? undefined : value);

function setting<T>(env: string, schema: z.ZodType<T>, shownDefault: string | undefined, d: Declaration): Setting<T> {
  return { env, schema, shownDefault, apply: d.apply, secret: d.secret ?? false, doc: d.doc };
}

/**
 * OpenTelemetry's `key1=value1,key2=value2` lists (OTEL_RESOURCE_ATTRIBUTES,
 * OTEL_EXPORTER_OTLP_HEADERS): trimmed, values percent-decoded; an entry
 * without `=` or with an empty key is refused.
 */
function keyValues(env: string, d: Declaration): Setting<Record<string, string>> {
  const schema = z.preprocess(
    blankAsUnset,
    z
      .string()
      .optional()
      .transform((value, ctx) => {
        const pairs: Record<string, string> = {};
        for (const [index, entry] of (value ?? '').split(',').entries()) {
          if (entry.trim() === '') continue;
          const at = entry.indexOf('=');
          const key = at > 0 ? entry.slice(0, at).trim() : '';
          let decoded: string | undefined;
          try {
            decoded = decodeURIComponent(entry.slice(at + 1).trim());
          } catch {
            decoded = undefined;
          }
          if (key === '' || decoded === undefined) {
            ctx.addIssue({ code: 'custom', message: `entry ${index + 1} must be key=value (value percent-encoded)` });
            return z.NEVER;
          }
          pairs[key] = decoded;
        }
        return pairs;
      }),
  );
  return setting(env, schema as z.ZodType<Record<string, string>>, undefined, d);
}

/** OTLP over HTTP, the two encodings the exporter speaks (`grpc` is refused: not bundled). */
const otlpProtocols = ['http/protobuf', 'http/json'] as const;

/** A whole number in [min, max]. */
function int(env: string, min: number, max: number, fallback: number, d: Declaration): Setting<number> {
  const schema = z.preprocess(blankAsUnset, z.coerce.number().int().min(min).max(max).default(fallback));
  return setting(env, schema as z.ZodType<number>, String(fallback), d);
}

/** `true` or `false` (blank: `fallback`); anything else is refused with "must be true or false". */
function bool(env: string, fallback: boolean, d: Declaration): Setting<boolean> {
  const schema = z.preprocess(
    blankAsUnset,
    z
      .enum(['true', 'false'], { message: 'must be true or false' })
      .default(String(fallback) as 'true' | 'false')
      .transform((value) => value === 'true'),
  );
  return setting(env, schema as z.ZodType<boolean>, String(fallback), d);
}

function text(env: string, d: Declaration): Setting<string | undefined>;
function text(env: string, d: Declaration, fallback: string): Setting<string>;
function text(env: string, d: Declaration, fallback?: string): Setting<string | undefined> {
  const base = z.string();
  const schema = z.preprocess(blankAsUnset, fallback === undefined ? base.optional() : base.default(fallback));
  return setting(env, schema as z.ZodType<string | undefined>, fallback, d);
}

/** An absolute URL with one of `protocols` (e.g. `['http:', 'https:']`). */
function url(env: string, protocols: string[], d: Declaration): Setting<string | undefined> {
  const schema = z.preprocess(
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
  return setting(env, schema as z.ZodType<string | undefined>, undefined, d);
}

function oneOf<const T extends readonly [string, ...string[]]>(
  env: string,
  values: T,
  fallback: T[number],
  d: Declaration,
): Setting<T[number]> {
  const schema = z.preprocess(blankAsUnset, z.enum(values).default(fallback as never));
  return setting(env, schema as z.ZodType<T[number]>, fallback, d);
}

/** Comma-separated, trimmed, empties dropped. */
function list(env: string, d: Declaration): Setting<string[]> {
  const schema = z.preprocess(
    blankAsUnset,
    z
      .string()
      .optional()
      .transform((value) =>
        (value ?? '')
          .split(',')
          .map((item) => item.trim())
          .filter(Boolean),
      ),
  );
  return setting(env, schema as z.ZodType<string[]>, undefined, d);
}

/** `whsec_` and standard base64 of at least one byte (the Standard Webhooks secret format). */
const whsecFormat = /^whsec_(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=|[A-Za-z0-9+/]{4})$/;

const live = (doc: string, secret = false): Declaration => ({ apply: 'live', doc, secret });
const restart = (doc: string, secret = false): Declaration => ({ apply: 'restart', doc, secret });

/** The table. Groups (webhook, redis, vault) become nested objects of `Config`. */
export const settingsTable = {
  port: int('PORT', 0, 65535, 8080, restart('HTTP port')),
  databaseUrl: url(
    'DATABASE_URL',
    ['postgres:', 'postgresql:'],
    restart(
      'PostgreSQL 13+, direct or through PgBouncer in transaction mode; unset: embedded PostgreSQL under `DATA_DIR`',
      true,
    ),
  ),
  databaseDirectUrl: url(
    'DATABASE_DIRECT_URL',
    ['postgres:', 'postgresql:'],
    restart(
      'a direct session to the same database for LISTEN (set it when `DATABASE_URL` is a transaction pooler); unset: `DATABASE_URL`, and polling if LISTEN does not work there',
      true,
    ),
  ),
  dataDir: text('DATA_DIR', restart('embedded database folder (kept across restarts)'), '.data'),
  instanceId: setting(
    'INSTANCE_ID',
    z.preprocess(
      blankAsUnset,
      z.string().default(() => `${hostname()}-${process.pid}`),
    ) as z.ZodType<string>,
    'hostname-pid',
    restart('owner name on leases and logs'),
  ),
  fetchIntervalMs: int('FETCH_INTERVAL_MS', 100, 3_600_000, 10_000, live('scheduler safety-net poll')),
  workerCount: int('WORKER_COUNT', 1, 100, 5, live('concurrent job runs per instance')),
  messageMaxLength: int('MESSAGE_MAX_LENGTH', 1, 10_000, 160, live('content limit in code points')),
  webhook: {
    url: url('WEBHOOK_URL', ['http:', 'https:'], live('delivery endpoint; unset: dry-run')),
    authHeader: setting(
      'WEBHOOK_AUTH_HEADER',
      z.preprocess(
        blankAsUnset,
        z
          .string()
          .regex(/^[A-Za-z0-9!#$%&'*+.^_`|~-]+$/, 'must be a valid HTTP header name')
          .optional(),
      ) as z.ZodType<string | undefined>,
      undefined,
      live('auth header name sent to the webhook, e.g. `x-ins-auth-key`'),
    ),
    authValue: text('WEBHOOK_AUTH_VALUE', live('its value', true)),
    timeoutMs: int('WEBHOOK_TIMEOUT_MS', 100, 120_000, 5_000, live('whole request, body included')),
    maxAttempts: int('WEBHOOK_MAX_ATTEMPTS', 1, 100, 5, live('delivery attempts, then `failed`')),
    concurrency: int(
      'WEBHOOK_CONCURRENCY',
      1,
      256,
      100,
      live('webhook requests in flight per pod: the ceiling of the adaptive limit, or the fixed limit'),
    ),
    adaptiveConcurrency: bool(
      'WEBHOOK_ADAPTIVE_CONCURRENCY',
      true,
      live(
        'the limit adapts to the webhook up to `WEBHOOK_CONCURRENCY` (grows while it keeps up, shrinks on timeouts, 429, 503 and rising latency); `false`: always `WEBHOOK_CONCURRENCY`',
      ),
    ),
    retryBaseMs: int('WEBHOOK_RETRY_BASE_MS', 1, 3_600_000, 1_000, live('first retry delay ceiling (full jitter)')),
    retryMaxMs: int('WEBHOOK_RETRY_MAX_MS', 1, 86_400_000, 300_000, live('retry delay ceiling')),
    signingSecrets: setting(
      'WEBHOOK_SIGNING_SECRET',
      z.preprocess(
        blankAsUnset,
        z
          .string()
          .optional()
          .superRefine((value, ctx) => {
            if (value === undefined) return;
            const secrets = value.split(/\s+/).filter(Boolean);
            if (secrets.length === 0) ctx.addIssue({ code: 'custom', message: 'must hold at least one whsec_ secret' });
            for (const [index, secret] of secrets.entries()) {
              if (!whsecFormat.test(secret))
                ctx.addIssue({
                  code: 'custom',
                  message: `secret ${index + 1} of ${secrets.length} must be "whsec_" followed by base64`,
                });
            }
          })
          .transform((value) => (value ?? '').split(/\s+/).filter(Boolean)),
      ) as z.ZodType<string[]>,
      undefined,
      live('space-separated `whsec_<base64>` secrets; set: every delivery is signed (Standard Webhooks)', true),
    ),
    breakerThreshold: int(
      'WEBHOOK_BREAKER_THRESHOLD',
      1,
      1_000,
      5,
      live(
        'consecutive transient failures that open the circuit breaker (then one probe at a time, 1 s doubling to 60 s)',
      ),
    ),
    rateLimitPerSecond: int(
      'WEBHOOK_RATE_LIMIT_PER_SECOND',
      0,
      100_000,
      0,
      live('deliveries per second across all pods together (shared through PostgreSQL); 0: no limit'),
    ),
  },
  redis: {
    url: url('REDIS_URL', ['redis:', 'rediss:'], restart('sent-message cache; unset: none', true)),
    ttlSeconds: int('REDIS_TTL_SECONDS', 1, 31_536_000, 604_800, restart('cache entry lifetime')),
  },
  vault: {
    addr: url('VAULT_ADDR', ['http:', 'https:'], restart('Vault server; unset: no Vault')),
    token: text('VAULT_TOKEN', restart('Vault token', true)),
    roleId: text('VAULT_ROLE_ID', restart('AppRole role id (instead of a token)')),
    secretId: text('VAULT_SECRET_ID', restart('AppRole secret id', true)),
    secretPath: text(
      'VAULT_SECRET_PATH',
      restart('KV v2 API path of the configuration secret'),
      'secret/data/job-manager',
    ),
    startTimeoutMs: int('VAULT_START_TIMEOUT_MS', 0, 600_000, 30_000, restart('start-up retry window')),
    refreshSeconds: int('VAULT_REFRESH_SECONDS', 0, 86_400, 60, restart('live re-read interval; 0: never')),
  },
  lokiUrl: url('LOKI_URL', ['http:', 'https:'], restart('also push logs to Loki')),
  logLevel: oneOf(
    'LOG_LEVEL',
    ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const,
    'info',
    live('pino level'),
  ),
  logFormat: setting(
    'LOG_FORMAT',
    z.preprocess(blankAsUnset, z.enum(['json', 'pretty']).optional()) as z.ZodType<'json' | 'pretty' | undefined>,
    undefined,
    restart('`json` or `pretty`; unset: pretty (pino-pretty) when stdout is a terminal, JSON otherwise'),
  ),
  apiKeys: list('API_KEYS', live('comma-separated keys for the API; unset: no auth, loopback only', true)),
  host: setting(
    'HOST',
    z.preprocess(
      blankAsUnset,
      z
        .string()
        .superRefine((value, ctx) => {
          const problem = hostProblem(value);
          if (problem) ctx.addIssue({ code: 'custom', message: problem });
        })
        .optional(),
    ) as z.ZodType<string | undefined>,
    undefined,
    restart(
      'listen address; unset: `127.0.0.1` without `API_KEYS`, `0.0.0.0` with them. Not loopback without keys: refused (exit 78)',
    ),
  ),
  allowUnauthenticated: bool(
    'ALLOW_UNAUTHENTICATED',
    false,
    restart('`true`: a non-loopback `HOST` may serve the API without `API_KEYS`'),
  ),
  trustProxy: setting(
    'TRUST_PROXY',
    z.preprocess(
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
    ) as z.ZodType<TrustProxy>,
    'false',
    restart('proxies whose `X-Forwarded-For` names the client (rate limit, logs): `false`, a hop count, or IPs/CIDRs'),
  ),
  intakeRateLimitPerMinute: int(
    'RATE_LIMIT_PER_MINUTE',
    0,
    1_000_000,
    0,
    live('`POST /messages` and `/messages/batch` requests per client and minute on each pod; 0: off'),
  ),
  /** The maintenance loop (src/maintenance/): message retention and the idempotency-key purge. */
  maintenance: {
    retentionDays: int(
      'MESSAGE_RETENTION_DAYS',
      0,
      36_500,
      30,
      live(
        'days a sent, failed or cancelled message is kept after its last change (`updated_at`), then removed with its attempts; pending and sending never; 0: keep everything',
      ),
    ),
    intervalMs: int(
      'MAINTENANCE_INTERVAL_MS',
      100,
      86_400_000,
      60_000,
      live('time between maintenance passes on each pod (retention, expired idempotency keys); one pod at a time'),
    ),
  },
  jobLeaseSeconds: int('JOB_LEASE_SECONDS', 1, 3_600, 30, restart('crash-recovery lease of a job run')),
  messageLeaseSeconds: int(
    'MESSAGE_LEASE_SECONDS',
    1,
    3_600,
    60,
    restart('crash-recovery lease of a message being sent; at least 2 × `WEBHOOK_TIMEOUT_MS`'),
  ),
  shutdownTimeoutMs: int(
    'SHUTDOWN_TIMEOUT_MS',
    0,
    600_000,
    25_000,
    restart('time in-flight runs get on SIGTERM; the process exits within this + 2 s'),
  ),
  /** Bounds on every database call (pool, LISTEN connection, pg-boss). */
  database: {
    poolMax: int(
      'DATABASE_POOL_MAX',
      3,
      1_000,
      10,
      restart('the main pool: workers, scheduler and API share it; `WORKER_COUNT` at most this − 2'),
    ),
    connectTimeoutMs: int(
      'DATABASE_CONNECT_TIMEOUT_MS',
      100,
      120_000,
      5_000,
      restart(
        'opening a database connection (pool, LISTEN, pg-boss), and an API request waiting for a pooled one (then 503)',
      ),
    ),
    statementTimeoutMs: int(
      'DATABASE_STATEMENT_TIMEOUT_MS',
      100,
      3_600_000,
      10_000,
      restart('server `statement_timeout`; the client gives up on a reply 2 s later (migrations exempt)'),
    ),
    startTimeoutMs: int(
      'DATABASE_START_TIMEOUT_MS',
      0,
      600_000,
      30_000,
      restart(
        'start-up window to reach the database at every step (connect, migrate, pg-boss, LISTEN; unreachable or too many connections retried with backoff); then exit 69',
      ),
    ),
  },
  /** OpenTelemetry's standard variables; spans are exported only when an endpoint is set. */
  otel: {
    endpoint: url(
      'OTEL_EXPORTER_OTLP_ENDPOINT',
      ['http:', 'https:'],
      restart('OTLP collector base URL (spans go to `<it>/v1/traces`); unset (and no traces endpoint): no export'),
    ),
    tracesEndpoint: url(
      'OTEL_EXPORTER_OTLP_TRACES_ENDPOINT',
      ['http:', 'https:'],
      restart('full OTLP traces URL, used as is; wins over `OTEL_EXPORTER_OTLP_ENDPOINT`'),
    ),
    protocol: oneOf(
      'OTEL_EXPORTER_OTLP_PROTOCOL',
      otlpProtocols,
      'http/protobuf',
      restart('`http/protobuf` or `http/json`'),
    ),
    tracesProtocol: setting(
      'OTEL_EXPORTER_OTLP_TRACES_PROTOCOL',
      z.preprocess(blankAsUnset, z.enum(otlpProtocols).optional()) as z.ZodType<
        (typeof otlpProtocols)[number] | undefined
      >,
      undefined,
      restart('the same for traces; unset: `OTEL_EXPORTER_OTLP_PROTOCOL`'),
    ),
    headers: keyValues(
      'OTEL_EXPORTER_OTLP_HEADERS',
      restart('`key=value,…` request headers for the collector (e.g. an auth token)', true),
    ),
    serviceName: text('OTEL_SERVICE_NAME', restart('`service.name` of the spans'), 'job-manager'),
    resourceAttributes: keyValues(
      'OTEL_RESOURCE_ATTRIBUTES',
      restart('`key=value,…` resource attributes (e.g. `deployment.environment.name=prod`)'),
    ),
    sampler: oneOf(
      'OTEL_TRACES_SAMPLER',
      [
        'parentbased_always_on',
        'parentbased_always_off',
        'parentbased_traceidratio',
        'always_on',
        'always_off',
        'traceidratio',
      ] as const,
      'parentbased_always_on',
      restart("which spans are recorded; `parentbased_*` follows a posted `traceparent`'s sampled flag"),
    ),
    samplerArg: setting(
      'OTEL_TRACES_SAMPLER_ARG',
      z.preprocess(blankAsUnset, z.coerce.number().min(0).max(1).default(1)) as z.ZodType<number>,
      '1',
      restart('the ratio (0..1) of the `*traceidratio` samplers'),
    ),
    batchDelayMs: int(
      'OTEL_BSP_SCHEDULE_DELAY',
      1,
      600_000,
      5_000,
      restart('milliseconds between two exports of finished spans'),
    ),
  },
} as const;

/** Rules over several settings, checked on the whole configuration that will run. */
export const crossSettingRules: Array<(config: Config) => { key: string; reason: string } | undefined> = [
  (c) =>
    c.vault.addr && !c.vault.token && !(c.vault.roleId && c.vault.secretId)
      ? { key: 'VAULT_ADDR', reason: 'is set but neither VAULT_TOKEN nor VAULT_ROLE_ID/VAULT_SECRET_ID is' }
      : undefined,
  // A chunk of sends must finish well inside its lease, or another pod could take the messages over mid-send.
  (c) =>
    c.messageLeaseSeconds * 1000 < 2 * c.webhook.timeoutMs
      ? {
          key: 'MESSAGE_LEASE_SECONDS',
          reason: `must be at least twice WEBHOOK_TIMEOUT_MS (${c.messageLeaseSeconds} s < 2 × ${c.webhook.timeoutMs} ms)`,
        }
      : undefined,
  // No API_KEYS means no authentication: then only this machine may reach the API.
  (c) => {
    const host = listenHost(c);
    if (c.apiKeys.length > 0 || c.allowUnauthenticated || isLoopbackHost(host)) return undefined;
    return {
      key: 'HOST',
      reason:
        `is ${host}, which is reachable from the network, but API_KEYS is not set: anyone could send messages. ` +
        'Set API_KEYS, bind HOST to 127.0.0.1, or set ALLOW_UNAUTHENTICATED=true to run open on purpose',
    };
  },
  // Each worker holds at most one connection of the main pool; the scheduler and the API need at least two more.
  (c) =>
    c.workerCount > c.database.poolMax - 2
      ? {
          key: 'WORKER_COUNT',
          reason: `must be at most DATABASE_POOL_MAX − 2 (${c.workerCount} > ${c.database.poolMax} − 2): the scheduler and the API share that pool with the workers`,
        }
      : undefined,
  (c) =>
    Boolean(c.webhook.authHeader) !== Boolean(c.webhook.authValue)
      ? { key: 'WEBHOOK_AUTH_HEADER', reason: 'and WEBHOOK_AUTH_VALUE must be set together' }
      : undefined,
];

type ConfigOf<T> = { readonly [K in keyof T]: T[K] extends Setting<infer V> ? V : ConfigOf<T[K]> };

/** The typed configuration: the table's shape with each setting's parsed value. */
export type Config = ConfigOf<typeof settingsTable>;

/** Every declared setting, in table order. */
export const allSettings: readonly Setting[] = flatten(settingsTable);

export type SettingName = string;
export const settingNames: readonly string[] = allSettings.map((s) => s.env);
export const secretSettings: readonly string[] = allSettings.filter((s) => s.secret).map((s) => s.env);
export const liveSettings: readonly string[] = allSettings.filter((s) => s.apply === 'live').map((s) => s.env);

function isSetting(value: unknown): value is Setting {
  return typeof value === 'object' && value !== null && 'env' in value && 'schema' in value;
}

function flatten(node: object): Setting[] {
  return Object.values(node).flatMap((value) => (isSetting(value) ? [value] : flatten(value as object)));
}

/** The config-object paths of the secret settings (`databaseUrl`, `webhook.authValue`, …), for log redaction. */
export function secretConfigPaths(node: object = settingsTable, prefix = ''): string[] {
  return Object.entries(node).flatMap(([key, value]) =>
    isSetting(value)
      ? value.secret
        ? [`${prefix}${key}`]
        : []
      : secretConfigPaths(value as object, `${prefix}${key}.`),
  );
}

/**
 * Paths pino must redact so no secret setting reaches a log line, whichever
 * way it is logged: a raw settings object (`API_KEYS`, `*.API_KEYS`) or the
 * typed configuration (`config.webhook.authValue`).
 */
export function logRedactionPaths(): string[] {
  return [
    ...secretSettings.flatMap((env) => [env, `*.${env}`]),
    ...secretConfigPaths().flatMap((path) => [`config.${path}`, `*.config.${path}`]),
  ];
}

/**
 * Parses every setting of the table from raw strings, building the `Config`
 * shape. Returns the first failure as `{ key, message }` instead of throwing.
 */
export function parseSettings(
  raw: Partial<Record<string, string>>,
): { ok: true; config: Config } | { ok: false; key: string; message: string } {
  const walk = (
    node: object,
  ): { ok: true; value: Record<string, unknown> } | { ok: false; key: string; message: string } => {
    const out: Record<string, unknown> = {};
    for (const [key, value] of Object.entries(node)) {
      if (isSetting(value)) {
        const parsed = value.schema.safeParse(raw[value.env]);
        if (!parsed.success)
          return { ok: false, key: value.env, message: parsed.error.issues[0]?.message ?? 'is invalid' };
        out[key] = parsed.data;
      } else {
        const inner = walk(value as object);
        if (!inner.ok) return inner;
        out[key] = inner.value;
      }
    }
    return { ok: true, value: out };
  };
  const result = walk(settingsTable);
  return result.ok ? { ok: true, config: result.value as unknown as Config } : result;
}
