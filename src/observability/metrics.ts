import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';

/**
 * Every metric the service exports, on its own registry (so tests can build
 * several services in one process). Gauges that need the database read it
 * through `collectors` at scrape time.
 */
export interface MetricsCollectors {
  pendingMessages(): Promise<number>;
  jobsByStatus(): Promise<Record<string, number>>;
  /** Milliseconds left of the shared delivery pause (Retry-After); 0: none. */
  deliveryPauseMs?(): Promise<number>;
}

/** prom-client default gauges whose names end in _total (see createMetrics). */
export const nonCounterTotals = [
  'nodejs_active_handles_total',
  'nodejs_active_requests_total',
  'nodejs_active_resources_total',
];

export function createMetrics() {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  // promtool rejects gauges named *_total; each duplicates the sum of its
  // labelled sibling (nodejs_active_handles{type} etc.), so they go.
  for (const name of nonCounterTotals) registry.removeSingleMetric(name);
  const registers = [registry];
  let collectors: MetricsCollectors | undefined;

  const metrics = {
    registry,
    jobRuns: new Counter({
      name: 'job_manager_job_runs_total',
      help: 'Job runs finished, by job and outcome (ok, error, unknown_handler, stale).',
      labelNames: ['job', 'outcome'] as const,
      registers,
    }),
    jobRunDuration: new Histogram({
      name: 'job_manager_job_run_duration_seconds',
      help: 'Wall time of a job run.',
      labelNames: ['job'] as const,
      buckets: [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120],
      registers,
    }),
    jobTriggerLateness: new Histogram({
      name: 'job_manager_job_trigger_lateness_seconds',
      help: 'How long after its due time a run started.',
      buckets: [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60],
      registers,
    }),
    fetchErrors: new Counter({
      name: 'job_manager_fetch_errors_total',
      help: 'Fetcher rounds that failed (they are retried).',
      registers,
    }),
    messagesSent: new Counter({ name: 'job_manager_messages_sent_total', help: 'Messages delivered.', registers }),
    messagesFailed: new Counter({
      name: 'job_manager_messages_failed_total',
      help: 'Messages that ended failed, by reason (permanent, attempts_exhausted).',
      labelNames: ['reason'] as const,
      registers,
    }),
    messagesRetried: new Counter({
      name: 'job_manager_messages_retried_total',
      help: 'Deliveries that failed transiently and were scheduled again.',
      registers,
    }),
    webhookDuration: new Histogram({
      name: 'job_manager_webhook_request_duration_seconds',
      help: 'Webhook request latency, by status class (2xx, 4xx, 5xx, error).',
      labelNames: ['status_class'] as const,
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers,
    }),
    deliveriesHeldBack: new Counter({
      name: 'job_manager_webhook_deliveries_held_back_total',
      help: 'Deliveries that waited before being claimed, by reason: rate_limit (WEBHOOK_RATE_LIMIT_PER_SECOND, shared by all pods) or paused (a 429/503 Retry-After).',
      labelNames: ['reason'] as const,
      registers,
    }),
    workersBusy: new Gauge({
      name: 'job_manager_workers_busy',
      help: 'Job runs executing now on this pod.',
      registers,
    }),
    redisErrors: new Counter({
      name: 'job_manager_redis_errors_total',
      help: 'Failed writes to the Redis cache.',
      registers,
    }),
    httpDuration: new Histogram({
      name: 'http_request_duration_seconds',
      help: 'HTTP request latency by method, route template and status code.',
      labelNames: ['method', 'route', 'status_code'] as const,
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
      registers,
    }),
    /** Wires the database-backed gauges (done by main.ts once the pool exists). */
    setCollectors(value: MetricsCollectors) {
      collectors = value;
    },
  };

  const cached = cacheFor(5_000);
  new Gauge({
    name: 'job_manager_messages_pending',
    help: 'Messages waiting to be sent (read from the database, cached 5 s).',
    registers,
    async collect() {
      if (collectors) this.set(await cached('pending', () => collectors!.pendingMessages()));
    },
  });
  new Gauge({
    name: 'job_manager_jobs',
    help: 'Jobs by status (read from the database, cached 5 s).',
    labelNames: ['status'] as const,
    registers,
    async collect() {
      if (!collectors) return;
      const counts = await cached('jobs', () => collectors!.jobsByStatus());
      for (const status of ['active', 'inactive', 'in_progress']) this.set({ status }, counts[status] ?? 0);
    },
  });
  new Gauge({
    name: 'job_manager_webhook_pause_seconds',
    help: "Seconds left of the pause every pod's deliveries are in after a 429 or 503 with Retry-After (read from the database); 0: none.",
    registers,
    async collect() {
      if (collectors?.deliveryPauseMs) this.set((await collectors.deliveryPauseMs()) / 1000);
    },
  });
  for (const reason of ['rate_limit', 'paused']) metrics.deliveriesHeldBack.inc({ reason }, 0);
  return metrics;
}

export type Metrics = ReturnType<typeof createMetrics>;

function cacheFor(ms: number) {
  const entries = new Map<string, { at: number; value: unknown }>();
  return async <T>(key: string, load: () => Promise<T>): Promise<T> => {
    const hit = entries.get(key);
    if (hit && Date.now() - hit.at < ms) return hit.value as T;
    const value = await load();
    entries.set(key, { at: Date.now(), value });
    return value;
  };
}
