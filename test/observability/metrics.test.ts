import { spawnSync } from 'node:child_process';
import { expect } from 'chai';
import { oldestDueMessageAgeQuery } from '../../src/db/sqlc/messages_sql.ts';
import { createMetrics, type Metrics } from '../../src/observability/metrics.ts';
import { parseExposition } from '../support/exposition.ts';
import { useTestDatabase } from '../support/postgres.ts';
import { eventually, startTestService, type TestService } from '../support/service.ts';

/** The metrics issue 5 requires: name -> type and label names. */
const requiredMetrics: Record<string, { type: string; labels: string[] }> = {
  job_manager_job_runs_total: { type: 'counter', labels: ['job', 'outcome'] },
  job_manager_job_run_duration_seconds: { type: 'histogram', labels: ['job'] },
  job_manager_job_trigger_lateness_seconds: { type: 'histogram', labels: [] },
  job_manager_messages_sent_total: { type: 'counter', labels: [] },
  job_manager_messages_failed_total: { type: 'counter', labels: ['reason'] },
  job_manager_messages_retried_total: { type: 'counter', labels: [] },
  job_manager_webhook_request_duration_seconds: { type: 'histogram', labels: ['status_class'] },
  job_manager_messages_pending: { type: 'gauge', labels: [] },
  job_manager_jobs: { type: 'gauge', labels: ['status'] },
  job_manager_workers_busy: { type: 'gauge', labels: [] },
  job_manager_redis_errors_total: { type: 'counter', labels: [] },
  job_manager_job_runs_rejected_total: { type: 'counter', labels: [] },
  job_manager_vault_refresh_failures_total: { type: 'counter', labels: ['reason'] },
  http_request_duration_seconds: { type: 'histogram', labels: ['method', 'route', 'status_code'] },
  // what the alert rules (deploy/prometheus/alerts.yml) read
  job_manager_oldest_due_pending_message_age_seconds: { type: 'gauge', labels: [] },
  job_manager_job_last_run_timestamp_seconds: { type: 'gauge', labels: ['job'] },
  job_manager_job_interval_seconds: { type: 'gauge', labels: ['job'] },
  job_manager_job_active: { type: 'gauge', labels: ['job'] },
  job_manager_health_check_up: { type: 'gauge', labels: ['check'] },
  // default process metrics
  process_cpu_seconds_total: { type: 'counter', labels: [] },
  process_resident_memory_bytes: { type: 'gauge', labels: [] },
  nodejs_eventloop_lag_seconds: { type: 'gauge', labels: [] },
  nodejs_heap_size_used_bytes: { type: 'gauge', labels: [] },
};

/** Runs `promtool check metrics` on the text; undefined when promtool is not installed. */
function promtoolCheck(text: string): { status: number | null; output: string } | undefined {
  const result = spawnSync('promtool', ['check', 'metrics'], { input: text, encoding: 'utf8' });
  if ((result.error as NodeJS.ErrnoException | undefined)?.code === 'ENOENT') return undefined;
  return { status: result.status, output: `${result.stdout}${result.stderr}` };
}

function observeEverything(metrics: Metrics): void {
  metrics.jobRuns.inc({ job: 'message-sender', outcome: 'ok' });
  metrics.jobRuns.inc({ job: 'message-sender', outcome: 'error' });
  metrics.jobRunDuration.observe({ job: 'message-sender' }, 0.42);
  metrics.jobTriggerLateness.observe(0.08);
  metrics.fetchErrors.inc();
  metrics.messagesSent.inc(2);
  metrics.messagesFailed.inc({ reason: 'permanent' });
  metrics.messagesRetried.inc();
  metrics.webhookDuration.observe({ status_class: '2xx' }, 0.031);
  metrics.workersBusy.set(3);
  metrics.redisErrors.inc();
  metrics.httpDuration.observe({ method: 'PUT', route: '/jobs/start', status_code: '200' }, 0.004);
  metrics.setCollectors({
    pendingMessages: async () => 1_234,
    jobsByStatus: async () => ({ active: 1, inactive: 2 }),
    jobNames: async () => ['message-sender'],
    oldestDueMessageAgeSeconds: async () => 42.5,
    jobSchedules: async () => [
      { name: 'message-sender', active: true, intervalSeconds: 120, lastRunAt: new Date('2026-12-07T10:00:00Z') },
      { name: 'nightly', active: false, intervalSeconds: 86_400, lastRunAt: null },
    ],
    healthChecks: async () => ({ database: true, redis: false }),
  });
}

describe('metrics (prom-client)', () => {
  let text: string;

  before(async () => {
    const metrics = createMetrics();
    observeEverything(metrics);
    text = await metrics.registry.metrics();
  });

  it('exports every required metric with its type, labels and a sample', () => {
    const families = parseExposition(text);
    for (const [name, expected] of Object.entries(requiredMetrics)) {
      const family = families.get(name);
      expect(family, `${name} is exported`).to.not.equal(undefined);
      expect(family!.type, `${name} type`).to.equal(expected.type);
      expect([...family!.labels].sort(), `${name} labels`).to.deep.equal([...expected.labels].sort());
      expect(family!.samples, `${name} has samples`).to.be.above(0);
      expect(family!.help, `${name} has help`).to.not.equal('');
    }
  });

  it('reads the database-backed gauges through the collectors', () => {
    expect(text).to.include('job_manager_messages_pending 1234');
    expect(text).to.include('job_manager_jobs{status="active"} 1');
    expect(text).to.include('job_manager_jobs{status="in_progress"} 0');
    expect(text).to.include('job_manager_oldest_due_pending_message_age_seconds 42.5');
    expect(text).to.include('job_manager_job_last_run_timestamp_seconds{job="message-sender"} 1796637600');
    expect(text).to.include('job_manager_job_last_run_timestamp_seconds{job="nightly"} 0');
    expect(text).to.include('job_manager_job_interval_seconds{job="nightly"} 86400');
    expect(text).to.include('job_manager_job_active{job="message-sender"} 1');
    expect(text).to.include('job_manager_job_active{job="nightly"} 0');
    expect(text).to.include('job_manager_health_check_up{check="database"} 1');
    expect(text).to.include('job_manager_health_check_up{check="redis"} 0');
  });

  it('passes promtool check metrics', function () {
    const result = promtoolCheck(text);
    if (!result) this.skip(); // CI installs Debian package "prometheus", which provides promtool
    expect(result!.output.trim(), 'promtool findings').to.equal('');
    expect(result!.status).to.equal(0);
  });

  describe('labelled series start at 0', () => {
    it('exports every failure reason and webhook status class before anything happened', async () => {
      const text = await createMetrics().registry.metrics();
      expect(text).to.include('job_manager_messages_failed_total{reason="permanent"} 0');
      expect(text).to.include('job_manager_messages_failed_total{reason="attempts_exhausted"} 0');
      for (const statusClass of ['1xx', '2xx', '3xx', '4xx', '5xx', 'error']) {
        expect(text).to.include(`job_manager_webhook_request_duration_seconds_count{status_class="${statusClass}"} 0`);
      }
    });

    it('exports every outcome of every job in the table, including one created later, without wiping counts', async () => {
      const metrics = createMetrics();
      const jobs = ['message-sender'];
      metrics.setCollectors({
        pendingMessages: async () => 0,
        jobsByStatus: async () => ({}),
        jobNames: async () => [...jobs],
      });
      metrics.jobRuns.inc({ job: 'message-sender', outcome: 'ok' });
      metrics.jobRunDuration.observe({ job: 'message-sender' }, 0.5);
      let text = await metrics.registry.metrics();
      expect(text).to.include('job_manager_job_runs_total{job="message-sender",outcome="ok"} 1');
      for (const outcome of ['error', 'unknown_handler', 'stale']) {
        expect(text).to.include(`job_manager_job_runs_total{job="message-sender",outcome="${outcome}"} 0`);
      }
      expect(text).to.include('job_manager_job_run_duration_seconds_count{job="message-sender"} 1');

      jobs.push('nightly-report');
      // The job list is cached for 5 s like the other database-backed series; a fresh registry reads it at once.
      const fresh = createMetrics();
      fresh.setCollectors({
        pendingMessages: async () => 0,
        jobsByStatus: async () => ({}),
        jobNames: async () => jobs,
      });
      text = await fresh.registry.metrics();
      for (const outcome of ['ok', 'error', 'unknown_handler', 'stale']) {
        expect(text).to.include(`job_manager_job_runs_total{job="nightly-report",outcome="${outcome}"} 0`);
      }
      expect(text).to.include('job_manager_job_run_duration_seconds_count{job="nightly-report"} 0');
      fresh.jobRunDuration.observe({ job: 'nightly-report' }, 2);
      text = await fresh.registry.metrics();
      expect(text).to.include('job_manager_job_run_duration_seconds_count{job="nightly-report"} 1');
    });
  });

  describe('GET /metrics of the running service', function () {
    this.timeout(60_000);
    const db = useTestDatabase();
    let service: TestService;

    before(async () => {
      service = await startTestService(db().url);
    });

    after(async () => {
      await service?.stop();
    });

    it('passes promtool check metrics and carries the required metrics', async function () {
      await fetch(`${service.url}/jobs`);
      await fetch(`${service.url}/jobs/no-such-job`);
      const response = await fetch(`${service.url}/metrics`);
      expect(response.status).to.equal(200);
      expect(response.headers.get('content-type')).to.match(/^text\/plain/);
      const body = await response.text();
      const families = parseExposition(body);
      for (const name of Object.keys(requiredMetrics)) expect(families.has(name), name).to.equal(true);
      expect(body).to.match(/job_manager_jobs\{status="active"\} \d/);
      // The seeded job's series exist before its first run finishes.
      expect(body).to.match(/job_manager_job_runs_total\{job="message-sender",outcome="error"\} 0/);
      expect(body).to.include('job_manager_messages_failed_total{reason="attempts_exhausted"} 0');
      const result = promtoolCheck(body);
      if (!result) this.skip();
      expect(result!.output.trim(), 'promtool findings').to.equal('');
      expect(result!.status).to.equal(0);
    });

    it('reads the alerting gauges from the database: oldest due message, job schedules, readiness checks', async () => {
      const gauge = async (series: string) => {
        const body = await (await fetch(`${service.url}/metrics`)).text();
        const line = body.split('\n').find((candidate) => candidate.startsWith(`${series} `));
        return line === undefined ? undefined : Number(line.slice(series.length + 1));
      };
      await fetch(`${service.url}/jobs/stop`, { method: 'PUT' });
      const { pool } = db();
      // Due 10 minutes ago and available (next in the claim), due 20 minutes ago but not promoted yet
      // (nothing claimed since its backoff ended), and one due tomorrow, which does not count.
      await pool.query(`INSERT INTO messages (recipient, content, next_attempt_at, available) VALUES
        ('+905551111111', 'available', now() - interval '10 minutes', true),
        ('+905551111111', 'not promoted', now() - interval '20 minutes', false),
        ('+905551111111', 'tomorrow', now() + interval '1 day', false)`);
      // Past the 5 s cache of the scrape before.
      const age = await eventually(
        () => gauge('job_manager_oldest_due_pending_message_age_seconds'),
        (value) => value !== undefined && value >= 1_200,
        { timeoutMs: 15_000, intervalMs: 500 },
      );
      expect(age).to.be.below(1_300);
      await pool.query("DELETE FROM messages WHERE content = 'not promoted'");
      await eventually(
        () => gauge('job_manager_oldest_due_pending_message_age_seconds'),
        (value) => value !== undefined && value >= 600 && value < 700,
        { timeoutMs: 15_000, intervalMs: 500 },
      );
      await pool.query("UPDATE messages SET status = 'cancelled', available = false");
      await eventually(
        () => gauge('job_manager_oldest_due_pending_message_age_seconds'),
        (value) => value === 0,
        { timeoutMs: 15_000, intervalMs: 500 },
      );

      await pool.query(
        "UPDATE jobs SET last_triggered_at = '2026-12-01T00:00:00Z', interval_seconds = 300 WHERE name = 'message-sender'",
      );
      expect(
        await eventually(
          () => gauge('job_manager_job_last_run_timestamp_seconds{job="message-sender"}'),
          (value) => value === Date.parse('2026-12-01T00:00:00Z') / 1000,
          { timeoutMs: 15_000, intervalMs: 500 },
        ),
      ).to.equal(1_796_083_200);
      expect(await gauge('job_manager_job_interval_seconds{job="message-sender"}')).to.equal(300);
      expect(await gauge('job_manager_job_active{job="message-sender"}')).to.equal(0);
      expect(await gauge('job_manager_health_check_up{check="database"}')).to.equal(1);
      expect(await gauge('job_manager_health_check_up{check="queue"}')).to.equal(1);
    });

    it('finds the oldest due message by index probes, without reading the backlog', async () => {
      const { pool } = db();
      await pool.query(`INSERT INTO messages (recipient, content, next_attempt_at, available)
        SELECT '+905551111111', 'm' || g, now() - make_interval(secs => g), g % 2 = 0
        FROM generate_series(1, 20000) AS g`);
      await pool.query('ANALYZE messages');
      const plan = await pool.query({ text: `EXPLAIN (FORMAT JSON) ${oldestDueMessageAgeQuery}` });
      const nodes: string[] = [];
      const walk = (node: { 'Node Type': string; 'Index Name'?: string; Plans?: unknown[] }) => {
        nodes.push(node['Index Name'] ? `${node['Node Type']} on ${node['Index Name']}` : node['Node Type']);
        for (const child of (node.Plans ?? []) as (typeof node)[]) walk(child);
      };
      walk(plan.rows[0]['QUERY PLAN'][0].Plan);
      // Each probe is a Limit over one index walk (an index-only one when the visibility map allows).
      const probes = nodes.filter((node) => /^Index (Only )?Scan on /.test(node)).map((node) => node.split(' on ')[1]);
      expect(probes, nodes.join(', ')).to.deep.equal(['messages_available_claim_idx', 'messages_scheduled_due_idx']);
      expect(
        nodes.filter((node) => /Seq Scan|Sort|Aggregate/.test(node)),
        nodes.join(', '),
      ).to.deep.equal([]);
    });
  });
});
