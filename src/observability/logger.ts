import { type DestinationStream, type Logger, type LoggerOptions, pino } from 'pino';
import { type LokiStream, openLokiStream } from './loki-stream.ts';

export type { Logger };

export interface LoggerSettings {
  level: string;
  instanceId: string;
  lokiUrl?: string | undefined;
  /** Where the JSON lines go (default: stdout). */
  destination?: DestinationStream;
  /** More paths to redact (main.ts passes the secret settings' paths, derived from the settings table). */
  redact?: string[];
  /** Seconds between two pushes to Loki (default 1). */
  lokiBatchIntervalSeconds?: number;
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
 * JSON logs to stdout (level names, ISO time); with a Loki URL the same lines
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
  const stdout = settings.destination ?? pino.destination({ dest: 1, sync: true });
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
