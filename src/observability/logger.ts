import { createRequire } from 'node:module';
import { type DestinationStream, type Logger, type LoggerOptions, pino } from 'pino';
import type pinoPretty from 'pino-pretty';
import { type LokiStream, openLokiStream } from './loki-stream.ts';

// pino-pretty is loaded only when a logger is made pretty (a person at a terminal): a pod writing JSON never
// holds it (its formatter, colours and date library stay out of the resident set).
const require = createRequire(import.meta.url);
const loadPretty = () => require('pino-pretty') as typeof pinoPretty;

export type { Logger };

export interface LoggerSettings {
  level: string;
  instanceId: string;
  lokiUrl?: string | undefined;
  /**
   * `pretty`: human-readable lines (pino-pretty) on stdout; `json`: one JSON
   * object per line. Default json. Loki always receives JSON. See logFormatFor.
   */
  format?: LogFormat | undefined;
  /** Where the lines go (default: stdout). */
  destination?: DestinationStream;
  /** More paths to redact (main.ts passes the secret settings' paths, derived from the settings table). */
  redact?: string[];
  /** Seconds between two pushes to Loki (default 1). */
  lokiBatchIntervalSeconds?: number;
}

export type LogFormat = 'json' | 'pretty';

/**
 * The format for stdout: LOG_FORMAT when set, else pretty when stdout is a
 * terminal (a person reads it) and JSON when it is not (a pipe, a file, a
 * container runtime or a log shipper reads it).
 */
export function logFormatFor(configured: LogFormat | undefined, stdoutIsTerminal: boolean): LogFormat {
  return configured ?? (stdoutIsTerminal ? 'pretty' : 'json');
}

/** Paths scrubbed from every log line, whatever the call site passes (plus `LoggerSettings.redact`). */
export const redactedPaths = [
  'password',
  'token',
  'authValue',
  'apiKey',
  'secret',
  '*.password',
  '*.token',
  '*.authValue',
  '*.apiKey',
  '*.secret',
  'secretId',
  '*.secretId',
  'authorization',
  '*.authorization',
  'req.headers.cookie',
  'req.headers["x-vault-token"]',
  'req.headers.authorization',
  'req.headers["x-api-key"]',
];

/**
 * Logs to stdout, JSON (level names, ISO time) or pretty; with a Loki URL the same JSON lines
 * are also pushed to Loki (labels app, instance, level) by pino-loki in a
 * worker thread. Both streams take every level: the logger's own level (which
 * a live LOG_LEVEL change sets) is the only filter. Call closeLogger before
 * exiting so the last lines reach Loki.
 */
export function createLogger(settings: LoggerSettings): Logger {
  const options: LoggerOptions = {
    level: settings.level,
    base: { app: 'job-manager', instance: settings.instanceId },
    redact: { paths: [...new Set([...redactedPaths, ...(settings.redact ?? [])])], censor: '[redacted]' },
    timestamp: pino.stdTimeFunctions.isoTime,
    formatters: { level: (label) => ({ level: label }) },
  };
  const destination = settings.destination ?? pino.destination({ dest: 1, sync: true });
  // pino-pretty in this thread (no transport worker): it reformats the JSON line
  // pino wrote, so redaction has already happened, and writes synchronously.
  const stdout =
    settings.format === 'pretty'
      ? loadPretty()({
          destination,
          sync: true,
          colorize: settings.destination === undefined && process.stdout.isTTY === true,
          translateTime: 'SYS:HH:MM:ss.l',
          ignore: 'app,instance',
          singleLine: false,
        })
      : destination;
  if (!settings.lokiUrl) return pino(options, stdout);
  const loki = openLokiStream({
    url: settings.lokiUrl,
    labels: { app: 'job-manager', instance: settings.instanceId },
    batchIntervalSeconds: settings.lokiBatchIntervalSeconds,
  });
  const logger = pino(
    options,
    pino.multistream([
      { level: 'trace', stream: stdout },
      { level: 'trace', stream: loki },
    ]),
  );
  lokiStreams.set(logger, loki);
  return logger;
}

/** Tells of each accepted change of the live configuration (the config room's `LiveSettings` is one). */
export interface LogLevelSource {
  onChange(listener: (next: { logLevel: string }) => void): void;
}

/** Keeps the logger's level at LOG_LEVEL as it changes live (both streams filter on it alone). */
export function followLogLevel(logger: Logger, settings: LogLevelSource): void {
  settings.onChange((next) => {
    logger.level = next.logLevel;
  });
}

const lokiStreams = new WeakMap<Logger, LokiStream>();

/** Flushes the logger; with Loki, pushes the lines still buffered and ends the transport. */
export async function closeLogger(logger: Logger, timeoutMs = 5_000): Promise<void> {
  await new Promise<void>((resolve) => logger.flush(() => resolve()));
  await lokiStreams.get(logger)?.close(timeoutMs);
}

/** A logger that drops everything, for tests and tools. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
