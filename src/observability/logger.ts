import { type Logger, type LoggerOptions, pino } from 'pino';

export type { Logger };

export interface LoggerSettings {
  level: string;
  instanceId: string;
  lokiUrl?: string | undefined;
}

/** Paths scrubbed from every log line, whatever the call site passes. */
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
  'req.headers.authorization',
  'req.headers["x-api-key"]',
  'config.databaseUrl',
  'config.webhook.authValue',
  'config.redis.url',
  'config.vault.token',
  'config.vault.secretId',
  'config.apiKeys',
];

/**
 * JSON logs to stdout; with a Loki URL the same lines are also pushed to Loki
 * (labels app, instance, level) by pino-loki in a worker thread.
 */
export function createLogger(settings: LoggerSettings): Logger {
  const options: LoggerOptions = {
    level: settings.level,
    base: { app: 'job-manager', instance: settings.instanceId },
    redact: { paths: redactedPaths, censor: '[redacted]' },
    timestamp: pino.stdTimeFunctions.isoTime,
    formatters: { level: (label) => ({ level: label }) },
  };
  if (!settings.lokiUrl) return pino(options);
  const transport = pino.transport({
    targets: [
      { target: 'pino/file', options: { destination: 1 }, level: settings.level },
      {
        target: 'pino-loki',
        level: settings.level,
        options: {
          host: settings.lokiUrl,
          batching: { interval: 1 },
          labels: { app: 'job-manager', instance: settings.instanceId },
          propsToLabels: ['level'],
        },
      },
    ],
  });
  return pino({ ...options, formatters: {} }, transport);
}

/** A logger that drops everything, for tests and tools. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
