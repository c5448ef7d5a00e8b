import { LiveConfig } from '../../src/config/live-config.ts';
import { silentLogger } from '../../src/observability/logger.ts';
import { type Service, type ServiceOptions, startService } from '../../src/service.ts';
import { type TestDatabase, useTestDatabase } from './postgres.ts';
import { rawRequest } from './raw-http.ts';

export interface TestService extends Service {
  url: string;
  /** Its live configuration: `live.update({...})` applies a change the way a new Vault secret does. */
  live: LiveConfig;
}

/** The real service, in this process, on a random port, against a test database; `settings` as environment variables. */
export async function startTestService(
  databaseUrl: string,
  settings: Record<string, string> = {},
  options: ServiceOptions = {},
): Promise<TestService> {
  const live = new LiveConfig({
    DATABASE_URL: databaseUrl,
    PORT: '0',
    LOG_LEVEL: 'silent',
    INSTANCE_ID: `test-${process.pid}-${Math.random().toString(36).slice(2, 8)}`,
    ...settings,
  });
  const service = await startService(live, silentLogger(), options);
  return { ...service, url: `http://127.0.0.1:${service.port}`, live };
}

/**
 * JSON over real HTTP (rawRequest): `body` is sent as JSON (a string as
 * given), and the answer's body parsed as JSON when it is JSON, else the
 * text. `path` is normalised and percent-encoded as a client library would
 * (use rawRequest to send it exactly as given).
 */
export async function api(
  base: string,
  method: string,
  path: string,
  body?: unknown,
  headers: Record<string, string> = {},
): Promise<{ status: number; body: any; headers: Headers }> {
  const url = new URL(path, base);
  const response = await rawRequest(base, method, url.pathname + url.search, {
    headers: { ...(body === undefined ? {} : { 'content-type': 'application/json' }), ...headers },
    body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
  });
  let parsed: unknown = response.text;
  try {
    parsed = response.text ? JSON.parse(response.text) : undefined;
  } catch {
    // not JSON: keep the text
  }
  return { status: response.status, body: parsed, headers: response.headers };
}

export async function eventually<T>(
  probe: () => Promise<T>,
  accept: (value: T) => boolean,
  { timeoutMs = 10_000, intervalMs = 100 } = {},
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last = await probe();
  while (!accept(last)) {
    if (Date.now() > deadline)
      throw new Error(`condition not met within ${timeoutMs} ms; last value: ${JSON.stringify(last)}`);
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
    last = await probe();
  }
  return last;
}

/**
 * Mocha helper: a migrated database of its own and the service on it, for
 * the current describe block (started in `before`, stopped in `after`).
 * `const { db, service } = useTestService({ FETCH_INTERVAL_MS: '3600000' });`
 * then `service().url` and `db().pool` inside tests. `settings` are
 * environment-style settings as for startTestService.
 */
export function useTestService(
  settings: Record<string, string> = {},
  options: ServiceOptions = {},
): { db: () => TestDatabase; service: () => TestService } {
  const db = useTestDatabase();
  let started: TestService | undefined;
  before(async () => {
    started = await startTestService(db().url, settings, options);
  });
  after(async () => {
    await started?.stop();
  });
  const service = () => {
    if (!started) throw new Error('test service not started (use inside a test or hook)');
    return started;
  };
  return { db, service };
}
