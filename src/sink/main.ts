/**
 * `npm run sink -- [flags]`: runs the webhook sink until SIGTERM or SIGINT.
 * Every flag has an environment equivalent (flag wins).
 */
import { parseArgs } from 'node:util';
import { type SinkOptions, startSink } from './server.ts';

const usage = `Usage: npm run sink -- [flags]

  --port N            listen port; 0 picks a free one        SINK_PORT (3999)
  --host H            listen address; 0.0.0.0 for all        SINK_HOST (127.0.0.1)
  --latency-ms N      delay before every reply               SINK_LATENCY_MS (0)
  --failure-rate F    fraction 0..1 of deliveries given 503  SINK_FAILURE_RATE (0)
  --status-code N     answer every valid delivery with N     SINK_STATUS_CODE
  --retry-after S     Retry-After seconds on a forced 429/503 SINK_RETRY_AFTER
  --max-concurrent N  serve N at once, 503 beyond (no Retry-After) SINK_MAX_CONCURRENT
  --auth-header NAME  require this header ...                SINK_AUTH_HEADER
  --auth-value VALUE  ... to carry this value, else 401      SINK_AUTH_VALUE
  --verbose           print one line per delivery            SINK_VERBOSE=1
  --help

POST any path delivers; GET /received reports what arrived; DELETE /received clears.`;

const flags = {
  port: { type: 'string', env: 'SINK_PORT' },
  host: { type: 'string', env: 'SINK_HOST' },
  'latency-ms': { type: 'string', env: 'SINK_LATENCY_MS' },
  'failure-rate': { type: 'string', env: 'SINK_FAILURE_RATE' },
  'status-code': { type: 'string', env: 'SINK_STATUS_CODE' },
  'retry-after': { type: 'string', env: 'SINK_RETRY_AFTER' },
  'max-concurrent': { type: 'string', env: 'SINK_MAX_CONCURRENT' },
  'auth-header': { type: 'string', env: 'SINK_AUTH_HEADER' },
  'auth-value': { type: 'string', env: 'SINK_AUTH_VALUE' },
} as const;
type FlagName = keyof typeof flags;

function readOptions(argv: string[], env: NodeJS.ProcessEnv): { options: SinkOptions; verbose: boolean } | 'help' {
  const { values } = parseArgs({
    args: argv,
    options: { ...flags, verbose: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } },
    strict: true,
  });
  if (values.help) return 'help';
  const raw = (name: FlagName): string | undefined => values[name] ?? (env[flags[name].env] || undefined);

  function numberFlag(name: FlagName, fallback: number | undefined, check: (n: number) => boolean, rule: string) {
    const text = raw(name);
    if (text === undefined) return fallback;
    const value = Number(text);
    if (text.trim() === '' || !check(value)) {
      throw new Error(`--${name} (${flags[name].env}) must be ${rule}, got "${text}"`);
    }
    return value;
  }
  const isInt = (min: number, max: number) => (n: number) => Number.isInteger(n) && n >= min && n <= max;

  const options: SinkOptions = {
    port: numberFlag('port', 3999, isInt(0, 65535), 'an integer 0..65535'),
    host: raw('host') ?? '127.0.0.1',
    latencyMs: numberFlag('latency-ms', 0, isInt(0, 600_000), 'an integer 0..600000'),
    failureRate: numberFlag('failure-rate', 0, (n) => n >= 0 && n <= 1, 'a number 0..1'),
    statusCode: numberFlag('status-code', undefined, isInt(100, 599), 'an HTTP status 100..599'),
    retryAfterSeconds: numberFlag('retry-after', undefined, isInt(0, 86_400), 'an integer 0..86400'),
    maxConcurrent: numberFlag('max-concurrent', undefined, isInt(1, 100_000), 'an integer 1..100000'),
    authHeader: raw('auth-header'),
    authValue: raw('auth-value'),
  };
  if (Boolean(options.authHeader) !== Boolean(options.authValue)) {
    throw new Error('--auth-header and --auth-value (SINK_AUTH_HEADER, SINK_AUTH_VALUE) must be given together');
  }
  return { options, verbose: Boolean(values.verbose) || env.SINK_VERBOSE === '1' };
}

async function main(): Promise<void> {
  let parsed: ReturnType<typeof readOptions>;
  try {
    parsed = readOptions(process.argv.slice(2), process.env);
  } catch (error) {
    console.error(`sink: ${(error as Error).message}\n\n${usage}`);
    process.exitCode = 2;
    return;
  }
  if (parsed === 'help') {
    console.log(usage);
    return;
  }
  const { options, verbose } = parsed;
  if (verbose) {
    options.onDelivery = (item) =>
      console.log(`${item.receivedAt} ${item.status} key=${item.idempotencyKey} to=${item.to}`);
  }
  let sink: Awaited<ReturnType<typeof startSink>>;
  try {
    sink = await startSink(options);
  } catch (error) {
    console.error(`sink: cannot listen on ${options.host}:${options.port}: ${(error as Error).message}`);
    process.exitCode = 1;
    return;
  }
  const behaviour = [
    options.latencyMs ? `latency ${options.latencyMs} ms` : '',
    options.failureRate ? `failure rate ${options.failureRate}` : '',
    options.statusCode ? `forced status ${options.statusCode}` : '',
    options.maxConcurrent ? `at most ${options.maxConcurrent} at once` : '',
    options.authHeader ? `auth header ${options.authHeader}` : '',
  ].filter(Boolean);
  if (sink.url !== `http://${sink.boundTo}`) behaviour.unshift(`bound to ${sink.boundTo}`);
  console.log(`webhook sink listening on ${sink.url}${behaviour.length ? ` (${behaviour.join(', ')})` : ''}`);
  console.log(`  POST ${sink.url}/ to deliver; GET ${sink.url}/received to see what arrived`);

  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) process.exit(1); // a second signal: do not wait any longer
    stopping = true;
    const { total, accepted, duplicates } = sink.received();
    await sink.close();
    console.log(
      `sink stopped on ${signal}: ${total} received, ${accepted} accepted, ${duplicates.length} duplicate keys`,
    );
  };
  process.on('SIGTERM', () => void stop('SIGTERM'));
  process.on('SIGINT', () => void stop('SIGINT'));
}

await main();
