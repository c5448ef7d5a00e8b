import { pino } from 'pino';

/**
 * Ships the logger's JSON lines to Loki through the pino-loki transport (a
 * worker thread that batches pushes to POST <url>/loki/api/v1/push).
 *
 * The service's lines carry an ISO `time` and a level name, which is what an
 * operator reads on stdout; pino-loki expects pino's native record (epoch-ms
 * `time`, numeric `level`), so each line is converted on the way in. Stream
 * labels: the given ones (app, instance) plus `level` with pino's own names
 * (trace, debug, info, warn, error, fatal). Credentials in the URL
 * (`http://user:pass@loki:3100`) become basic auth, never part of a request URL.
 */
export interface LokiStream {
  write(line: string): void;
  /** Pushes what is still buffered and ends the worker (at most timeoutMs). */
  close(timeoutMs?: number): Promise<void>;
}

export interface LokiStreamOptions {
  url: string;
  labels: Record<string, string>;
  /** Seconds between two pushes (default 1). */
  batchIntervalSeconds?: number;
}

const levelNames = { 10: 'trace', 20: 'debug', 30: 'info', 40: 'warn', 50: 'error', 60: 'fatal' };

export function openLokiStream(options: LokiStreamOptions): LokiStream {
  const url = new URL(options.url);
  const basicAuth = url.username
    ? { username: decodeURIComponent(url.username), password: decodeURIComponent(url.password) }
    : undefined;
  url.username = '';
  url.password = '';
  const transport = pino.transport({
    target: 'pino-loki',
    options: {
      host: url.toString(),
      ...(basicAuth ? { basicAuth } : {}),
      labels: options.labels,
      levelMap: levelNames,
      batching: { interval: options.batchIntervalSeconds ?? 1 },
      timeout: 10_000,
    },
  });
  // A failing worker must not take the service down; stdout still has every line.
  transport.on('error', (error: Error) => console.error(`Loki log transport failed: ${error.message}`));
  let closed: Promise<void> | undefined;
  return {
    write(line) {
      if (!closed) transport.write(toPinoRecord(line));
    },
    close(timeoutMs = 5_000) {
      closed ??= new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, timeoutMs);
        transport.once('close', () => {
          clearTimeout(timer);
          resolve();
        });
        transport.end();
      });
      return closed;
    },
  };
}

/** `{"level":"warn","time":"2025-…Z",…}` -> `{"level":40,"time":1735…,…}` (one line, newline-terminated). */
export function toPinoRecord(line: string): string {
  let record: Record<string, unknown>;
  try {
    record = JSON.parse(line);
  } catch {
    return line.endsWith('\n') ? line : `${line}\n`;
  }
  if (typeof record.level === 'string') record.level = pino.levels.values[record.level] ?? 30;
  if (typeof record.time === 'string') {
    const ms = Date.parse(record.time);
    record.time = Number.isNaN(ms) ? Date.now() : ms;
  }
  return `${JSON.stringify(record)}\n`;
}
