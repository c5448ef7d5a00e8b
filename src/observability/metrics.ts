import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';

/**
 * Every metric the service exports, on its own registry (so tests can build
 * several services in one process). Gauges that need the database read it
 * through `collectors` at scrape time.
 */
export interface MetricsCollectors {
  pendingMessages(): Promise<number>;
  jobsByStatus(): Promise<Record<string, number>>;
  /** Names of every job in the table: their per-job series start at 0 before the first run. */
  jobNames(): Promise<string[]>;
  /** Milliseconds left of the shared delivery pause (Retry-After); 0: none. */
  deliveryPauseMs?(): Promise<number>;
  /** Seconds the longest-waiting due pending message has been due (one index probe per read); 0: none due. */
  oldestDueMessageAgeSeconds?(): Promise<number>;
  /** Every job's schedule: for the per-job last-run, interval and active gauges. */
  jobSchedules?(): Promise<JobSchedule[]>;
  /** Each readiness check by name: true when it answered, false when it failed or timed out (down). */
  healthChecks?(): Promise<Record<string, boolean>>;
}

/** What the alerting gauges need to know of a job. */
export interface JobSchedule {
  name: string;
  /** Active or in a run (not stopped). */
  active: boolean;
  intervalSeconds: number;
  /** When its last run ended; null: never. */
  lastRunAt: Date | null;
}

/**
 * The known values of each bounded label. Every combination is exported from
 * the start (counters at 0, histograms with empty buckets), so a dashboard
 * shows 0 instead of "No data" on a healthy system and `rate()` sees the first
 * increment. Per-job series are added at scrape time from the jobs table, so a
 * job created at runtime appears at the next scrape.
 */
export const messageFailureReasons = ['permanent', 'attempts_exhausted'] as const;
export const jobRunOutcomes = ['ok', 'error', 'unknown_handler', 'stale'] as const;
export const webhookStatusClasses = ['1xx', '2xx', '3xx', '4xx', '5xx', 'error'] as const;
/** Why a Vault refresh left the running configuration in place (src/config/vault.ts maps its errors to these). */
export const vaultFailureReasons = [
  'unavailable',
  'sealed',
  'not_found',
  'forbidden',
  'token_invalid',
  'login_failed',
  'invalid_secret',
  'rejected',
  'refused',
] as const;
export type VaultFailureReason = (typeof vaultFailureReasons)[number];

/** prom-client default gauges whose names end in _total (see processMetrics). */
export const nonCounterTotals = [
  'nodejs_active_handles_total',
  'nodejs_active_requests_total',
  'nodejs_active_resources_total',
];

/**
 * Every metric, grouped by the component that records it. Field names are the
 * `Metrics` API the components use; the metric names, help texts and label
 * sets are the exported contract.
 */
export function createMetrics() {
  const registry = processMetrics();
  let collectors: MetricsCollectors | undefined;
  const group: MetricGroup = { registers: [registry], collectors: () => collectors, cached: cacheFor(5_000) };
  messageMetrics(group);
  alertingGauges(group);
  return {
    registry,
    ...engineMetrics(group),
    ...deliveryMetrics(group),
    ...httpMetrics(group),
    ...maintenanceMetrics(group),
    ...vaultMetrics(group),
    /** Wires the database-backed gauges (done by the composition root once the pool exists). */
    setCollectors(value: MetricsCollectors) {
      collectors = value;
    },
  };
}

export type Metrics = ReturnType<typeof createMetrics>;

/** What each component's group of metrics is built with. */
interface MetricGroup {
  registers: Registry[];
  /** The database-backed readers, once the composition root has wired them. */
  collectors(): MetricsCollectors | undefined;
  /** Reads through a 5 s cache, so a burst of scrapes costs one query. */
  cached: <T>(key: string, load: () => Promise<T>) => Promise<T>;
}

/** The registry with prom-client's default process and Node.js metrics. */
function processMetrics(): Registry {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  // promtool rejects gauges named *_total; each duplicates the sum of its
  // labelled sibling (nodejs_active_handles{type} etc.), so they go.
  for (const name of nonCounterTotals) registry.removeSingleMetric(name);
  return registry;
}

/** The engine's: runs by job and outcome, their duration and lateness, the fetcher, the workers, jobs by status. */
function engineMetrics({ registers, collectors, cached }: MetricGroup) {
  /** Job names for the per-job series; a failed read keeps the series already there. */
  const knownJobs = async (): Promise<string[]> => {
    const source = collectors();
    return source ? await cached('jobNames', () => source.jobNames()).catch(() => []) : [];
  };
  new Gauge({
    name: 'job_manager_jobs',
    help: 'Jobs by status (read from the database, cached 5 s).',
    labelNames: ['status'] as const,
    registers,
    async collect() {
      const source = collectors();
      if (!source) return;
      const counts = await readOrKeep(() => cached('jobs', () => source.jobsByStatus()));
      if (counts === undefined) return;
      for (const status of ['active', 'inactive', 'in_progress']) this.set({ status }, counts[status] ?? 0);
    },
  });
  return {
    jobRuns: new Counter({
      name: 'job_manager_job_runs_total',
      help: 'Job runs finished, by job and outcome (ok, error, unknown_handler, stale).',
      labelNames: ['job', 'outcome'] as const,
      registers,
      async collect() {
        for (const job of await knownJobs()) for (const outcome of jobRunOutcomes) this.inc({ job, outcome }, 0);
      },
    }),
    jobRunDuration: jobRunDurationHistogram(registers, knownJobs),
    jobTriggerLateness: new Histogram({
      name: 'job_manager_job_trigger_lateness_seconds',
      help: 'How long after its due time a run started.',
      buckets: [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60],
      registers,
    }),
    runsRejected: new Counter({
      name: 'job_manager_job_runs_rejected_total',
      help: 'Queue messages on job-runs whose payload is not a run (sent by hand); dead-lettered without retries.',
      registers,
    }),
    fetchErrors: new Counter({
      name: 'job_manager_fetch_errors_total',
      help: 'Fetcher rounds that failed (they are retried).',
      registers,
    }),
    workersBusy: new Gauge({
      name: 'job_manager_workers_busy',
      help: 'Job runs executing now on this pod.',
      registers,
    }),
  };
}

/** Delivery's: outcomes, webhook latency, held-back deliveries and the shared pause, the breaker, the Redis cache. */
function deliveryMetrics({ registers, collectors }: MetricGroup) {
  new Gauge({
    name: 'job_manager_webhook_pause_seconds',
    help: "Seconds left of the pause every pod's deliveries are in after a 429 or 503 with Retry-After (read from the database); 0: none.",
    registers,
    async collect() {
      const source = collectors();
      if (!source?.deliveryPauseMs) return;
      const pauseMs = await readOrKeep(() => source.deliveryPauseMs!());
      if (pauseMs !== undefined) this.set(pauseMs / 1000);
    },
  });
  const metrics = {
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
    webhookBreaker: new Gauge({
      name: 'job_manager_webhook_breaker_state',
      help: 'The webhook circuit breaker on this pod: 1 for its current state (closed, open, half-open), 0 for the others.',
      labelNames: ['state'] as const,
      registers,
    }),
    webhookBreakerOpened: new Counter({
      name: 'job_manager_webhook_breaker_opened_total',
      help: 'Times the webhook circuit breaker opened (after consecutive transient failures or a failed probe).',
      registers,
    }),
    webhookConcurrencyLimit: new Gauge({
      name: 'job_manager_webhook_concurrency_limit',
      help: 'Webhook requests this pod allows in flight now: the adaptive limit (WEBHOOK_ADAPTIVE_CONCURRENCY), or WEBHOOK_CONCURRENCY.',
      registers,
    }),
    redisErrors: new Counter({
      name: 'job_manager_redis_errors_total',
      help: 'Failed writes to the Redis cache.',
      registers,
    }),
  };
  for (const reason of messageFailureReasons) metrics.messagesFailed.inc({ reason }, 0);
  for (const statusClass of webhookStatusClasses) metrics.webhookDuration.zero({ status_class: statusClass });
  for (const state of ['closed', 'open', 'half-open'])
    metrics.webhookBreaker.set({ state }, state === 'closed' ? 1 : 0);
  for (const reason of ['rate_limit', 'paused']) metrics.deliveriesHeldBack.inc({ reason }, 0);
  return metrics;
}

/** The HTTP API's: request latency by method, route template and status code. */
function httpMetrics({ registers }: MetricGroup) {
  return {
    httpDuration: new Histogram({
      name: 'http_request_duration_seconds',
      help: 'HTTP request latency by method, route template and status code.',
      labelNames: ['method', 'route', 'status_code'] as const,
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
      registers,
    }),
  };
}

/** Tables the maintenance loop removes rows from (message_attempts rows go with their messages, by a delete trigger). */
export const maintenanceTables = ['messages', 'idempotency_keys'] as const;

/** The maintenance loop's: rows removed by table, and how long a pass took on this pod. */
function maintenanceMetrics({ registers }: MetricGroup) {
  const metrics = {
    maintenanceRowsRemoved: new Counter({
      name: 'job_manager_maintenance_rows_removed_total',
      help: 'Rows the maintenance loop removed, by table: messages past MESSAGE_RETENTION_DAYS (their attempts go with them), idempotency keys past 24 h.',
      labelNames: ['table'] as const,
      registers,
    }),
    maintenancePassDuration: new Histogram({
      name: 'job_manager_maintenance_pass_duration_seconds',
      help: 'Wall time of a maintenance pass this pod ran (it held the maintenance turn).',
      buckets: [0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300],
      registers,
    }),
  };
  for (const table of maintenanceTables) metrics.maintenanceRowsRemoved.inc({ table }, 0);
  return metrics;
}

/** The Vault watcher's (src/main.ts hands it the counter once the service runs). */
function vaultMetrics({ registers }: MetricGroup) {
  const vaultRefreshFailures = new Counter({
    name: 'job_manager_vault_refresh_failures_total',
    help: 'Vault re-reads that left the running configuration in place: the read failed (by reason) or the new secret was refused.',
    labelNames: ['reason'] as const,
    registers,
  });
  for (const reason of vaultFailureReasons) vaultRefreshFailures.inc({ reason }, 0);
  return { vaultRefreshFailures };
}

/** Intake's: the backlog of messages waiting to be sent, read at scrape time (no field: nothing records it). */
function messageMetrics({ registers, collectors, cached }: MetricGroup): void {
  new Gauge({
    name: 'job_manager_messages_pending',
    help: "Messages waiting to be sent (read from the database, cached 5 s): exact up to 10,000, above that PostgreSQL's estimate from the last ANALYZE.",
    registers,
    async collect() {
      const source = collectors();
      if (!source) return;
      const pending = await readOrKeep(() => cached('pending', () => source.pendingMessages()));
      if (pending !== undefined) this.set(pending);
    },
  });
}

/**
 * The gauges the alert rules (deploy/prometheus/alerts.yml) need, read at
 * scrape time through the 5 s cache: how long the longest-waiting due message
 * has been due, each job's last run, interval and whether it is active, and
 * each readiness check as 1 (answered) or 0 (down).
 */
function alertingGauges({ registers, collectors, cached }: MetricGroup): void {
  new Gauge({
    name: 'job_manager_oldest_due_pending_message_age_seconds',
    help: 'Seconds the longest-waiting due pending message has been due and not sent (read from the database by index probes, cached 5 s); 0: none due.',
    registers,
    async collect() {
      const source = collectors();
      if (!source?.oldestDueMessageAgeSeconds) return;
      const age = await readOrKeep(() => cached('oldestDue', () => source.oldestDueMessageAgeSeconds!()));
      if (age !== undefined) this.set(age);
    },
  });
  const schedules = async () => {
    const source = collectors();
    return source?.jobSchedules ? readOrKeep(() => cached('jobSchedules', () => source.jobSchedules!())) : undefined;
  };
  new Gauge({
    name: 'job_manager_job_last_run_timestamp_seconds',
    help: 'When each job last finished a run (unix seconds, from the jobs table, cached 5 s); 0: never.',
    labelNames: ['job'] as const,
    registers,
    async collect() {
      for (const job of (await schedules()) ?? []) this.set({ job: job.name }, (job.lastRunAt?.getTime() ?? 0) / 1000);
    },
  });
  new Gauge({
    name: 'job_manager_job_interval_seconds',
    help: "Each job's interval (from the jobs table, cached 5 s).",
    labelNames: ['job'] as const,
    registers,
    async collect() {
      for (const job of (await schedules()) ?? []) this.set({ job: job.name }, job.intervalSeconds);
    },
  });
  new Gauge({
    name: 'job_manager_job_active',
    help: '1 when the job is started (active or in a run), 0 when stopped (from the jobs table, cached 5 s).',
    labelNames: ['job'] as const,
    registers,
    async collect() {
      for (const job of (await schedules()) ?? []) this.set({ job: job.name }, job.active ? 1 : 0);
    },
  });
  new Gauge({
    name: 'job_manager_health_check_up',
    help: 'Each readiness check of /health-check on this pod: 1 when it answered, 0 when it failed or timed out (cached 5 s).',
    labelNames: ['check'] as const,
    registers,
    async collect() {
      const source = collectors();
      if (!source?.healthChecks) return;
      const checks = await readOrKeep(() => cached('health', () => source.healthChecks!()));
      for (const [check, up] of Object.entries(checks ?? {})) this.set({ check }, up ? 1 : 0);
    },
  });
}

/**
 * Run duration by job. At scrape, each job without a series yet gets an empty
 * one; `zero()` would wipe a series that has samples, so jobs already observed
 * are remembered and left alone.
 */
function jobRunDurationHistogram(registers: Registry[], knownJobs: () => Promise<string[]>) {
  const started = new Set<string>();
  const histogram = new Histogram({
    name: 'job_manager_job_run_duration_seconds',
    help: 'Wall time of a job run.',
    labelNames: ['job'] as const,
    buckets: [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120],
    registers,
    async collect() {
      for (const job of await knownJobs()) {
        if (started.has(job)) continue;
        started.add(job);
        this.zero({ job });
      }
    },
  });
  const observe = histogram.observe.bind(histogram);
  histogram.observe = ((labels: { job: string }, seconds: number) => {
    started.add(labels.job);
    observe(labels, seconds);
  }) as typeof histogram.observe;
  return histogram;
}

/**
 * A database-backed gauge read at scrape time. While the database is down
 * the gauge keeps its last value (undefined here), so `/metrics` still
 * answers 200 with every other series: Prometheus must not lose the pod
 * exactly during an outage (readiness says the database is down).
 */
async function readOrKeep<T>(load: () => Promise<T | undefined>): Promise<T | undefined> {
  try {
    return await load();
  } catch {
    return undefined;
  }
}

function cacheFor(ms: number) {
  // The promise is cached, so gauges reading the same key in one scrape share one query; a failed read is forgotten.
  const entries = new Map<string, { at: number; value: Promise<unknown> }>();
  return <T>(key: string, load: () => Promise<T>): Promise<T> => {
    const hit = entries.get(key);
    if (hit && Date.now() - hit.at < ms) return hit.value as Promise<T>;
    const value = load();
    const entry = { at: Date.now(), value };
    entries.set(key, entry);
    value.catch(() => {
      if (entries.get(key) === entry) entries.delete(key);
    });
    return value;
  };
}
