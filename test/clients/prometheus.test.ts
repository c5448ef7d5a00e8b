// Every Grafana dashboard query, evaluated by a real Prometheus (Debian's
// `prometheus` binary, our own config on a free loopback port, its own
// storage) that scrapes a real service process and itself. A query that
// errors, or one over a job_manager_* metric that returns no series, fails;
// "Replicas" must count the one service instance and not Prometheus.
// The same Prometheus loads the alert rules of deploy/prometheus/ and
// evaluates every one against the real scrape (no rule may error, and every
// job_manager_* metric an alert reads must exist); promtool checks the rules
// and runs their unit tests.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'chai';
import { parse, stringify } from 'yaml';
import { findFreePort } from '../../src/db/embedded.ts';
import { useTestDatabase } from '../support/postgres.ts';
import { launch, type TestProcess } from '../support/processes.ts';
import { metricNamesIn } from '../support/promql.ts';
import { type RunningService, root, startService } from './support.ts';

interface Target {
  expr?: string;
  datasource?: { type: string; uid: string };
}
interface Panel {
  title: string;
  datasource?: { type: string; uid: string };
  targets?: Target[];
  panels?: Panel[];
}

const dashboardsDir = join(root, 'deploy/grafana/dashboards');
const queries = readdirSync(dashboardsDir)
  .filter((file) => file.endsWith('.json'))
  .flatMap((file) => {
    const json = JSON.parse(readFileSync(join(dashboardsDir, file), 'utf8'));
    const panels = (list: Panel[]): Panel[] => list.flatMap((p) => [p, ...panels(p.panels ?? [])]);
    return panels(json.panels).flatMap((panel) =>
      (panel.targets ?? [])
        .filter((target) => (target.datasource ?? panel.datasource)?.type === 'prometheus' && target.expr)
        .map((target) => ({ file, panel: panel.title, expr: target.expr! })),
    );
  });

/** The alert rule files beside the deployed config, their unit tests (*_test.yml), and every alert in them. */
const prometheusDir = join(root, 'deploy/prometheus');
const ruleFiles = readdirSync(prometheusDir)
  .filter((file) => file.endsWith('.yml') && !file.endsWith('_test.yml'))
  .map((file) => join(prometheusDir, file));
const ruleTestFiles = readdirSync(prometheusDir)
  .filter((file) => file.endsWith('_test.yml'))
  .map((file) => join(prometheusDir, file));
const alerts = ruleFiles.flatMap((file) =>
  (parse(readFileSync(file, 'utf8')).groups as Array<{ rules: Array<{ alert?: string; expr: string }> }>).flatMap(
    (group) => group.rules.flatMap((rule) => (rule.alert ? [{ alert: rule.alert, expr: rule.expr }] : [])),
  ),
);

/**
 * Grafana's variables as Grafana would fill them for this scrape interval:
 * $__rate_interval is at least four scrape intervals; a dashboard variable
 * ($instance, ${route}) means "all", which Grafana sends as a regex.
 */
function substituteGrafanaVariables(expr: string): string {
  return expr
    .replaceAll('$__rate_interval', '1m')
    .replaceAll('$__interval', '15s')
    .replaceAll('$__range', '5m')
    .replace(/(\w+)\s*=\s*"\$\{?\w+\}?"/g, '$1=~".*"')
    .replace(/\$\{?\w+\}?/g, '.*');
}

async function query(
  base: string,
  expr: string,
): Promise<{ status: string; error?: string; data?: { result: unknown[] } }> {
  const response = await fetch(`${base}/api/v1/query?query=${encodeURIComponent(expr)}`);
  return (await response.json()) as { status: string; error?: string; data?: { result: unknown[] } };
}

async function until<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = 60_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const value = await probe().catch(() => undefined);
    if (value !== undefined) return value;
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
  throw new Error(`timed out waiting for ${what}`);
}

describe('Grafana dashboard queries in a real Prometheus', function () {
  this.timeout(180_000);
  const db = useTestDatabase();
  let service: RunningService;
  let prometheus: TestProcess & { base: string; storage: string };

  before(async () => {
    service = await startService({ DATABASE_URL: db().url });
    const port = await findFreePort();
    const storage = mkdtempSync(join(tmpdir(), 'jm-prometheus-'));
    // The scrape job exactly as deploy/prometheus.yml declares it, with the
    // running service as a static target instead of Docker's DNS; Prometheus scrapes itself too.
    const deployed = parse(readFileSync(join(root, 'deploy/prometheus.yml'), 'utf8'));
    const serviceJob = {
      ...deployed.scrape_configs.find((job: { job_name: string }) => job.job_name === 'job-manager'),
    };
    delete serviceJob.dns_sd_configs;
    serviceJob.static_configs = [{ targets: [new URL(service.url).host] }];
    const config = {
      global: { scrape_interval: '1s', evaluation_interval: '1s' },
      scrape_configs: [serviceJob, { job_name: 'prometheus', static_configs: [{ targets: [`127.0.0.1:${port}`] }] }],
      rule_files: ruleFiles,
    };
    writeFileSync(join(storage, 'prometheus.yml'), stringify(config));
    const child = launch('prometheus', {
      args: [
        `--config.file=${join(storage, 'prometheus.yml')}`,
        `--storage.tsdb.path=${join(storage, 'data')}`,
        `--web.listen-address=127.0.0.1:${port}`,
        '--log.level=warn',
      ],
      keepLines: 500,
    });
    prometheus = Object.assign(child, { base: `http://127.0.0.1:${port}`, storage });
    await until('Prometheus ready', async () => ((await fetch(`${prometheus.base}/-/ready`)).ok ? true : undefined));
    // Enough scrapes of both targets for rate() over the substituted $__rate_interval.
    await until(
      'three scrapes of the service and of Prometheus',
      async () => {
        const result = await query(prometheus.base, 'min by (job) (count_over_time(up[1m])) >= 3');
        return (result.data?.result.length ?? 0) >= 2 ? true : undefined;
      },
      90_000,
    );
  });

  after(async () => {
    await prometheus?.stop();
    if (prometheus) rmSync(prometheus.storage, { recursive: true, force: true });
    await service?.stop();
  });

  it('has queries to evaluate', () => {
    expect(queries.length).to.be.above(10);
  });

  it('substitutes Grafana variables the way Grafana would', () => {
    expect(substituteGrafanaVariables('rate(x{job="job-manager", instance="$instance"}[$__rate_interval])')).to.equal(
      'rate(x{job="job-manager", instance=~".*"}[1m])',
    );
  });

  for (const { file, panel, expr } of queries) {
    it(`${file} "${panel}": ${expr}`, async () => {
      const result = await query(prometheus.base, substituteGrafanaVariables(expr));
      expect(result.error, 'Prometheus error').to.equal(undefined);
      expect(result.status).to.equal('success');
      if (/job_manager_\w+/.test(expr)) {
        expect(result.data?.result ?? [], 'series (labelled counters start at 0)').to.not.be.empty;
      }
    });
  }

  it('promtool accepts the alert rules and their unit tests pass', () => {
    const check = spawnSync('promtool', ['check', 'rules', ...ruleFiles], { encoding: 'utf8' });
    expect(check.status, `${check.stdout}${check.stderr}`).to.equal(0);
    const tests = spawnSync('promtool', ['test', 'rules', ...ruleTestFiles], { encoding: 'utf8' });
    expect(tests.status, `${tests.stdout}${tests.stderr}`).to.equal(0);
    expect(alerts.length).to.be.at.least(5);
  });

  it('loads every alert rule and evaluates each without an error', async () => {
    const rules = await until('every alert rule evaluated', async () => {
      const response = await fetch(`${prometheus.base}/api/v1/rules?type=alert`);
      const body = (await response.json()) as {
        data: { groups: Array<{ rules: Array<{ name: string; health: string; lastError?: string }> }> };
      };
      const loaded = body.data.groups.flatMap((group) => group.rules);
      return loaded.length === alerts.length && loaded.every((rule) => rule.health !== 'unknown') ? loaded : undefined;
    });
    expect(rules.map((rule) => rule.name).sort()).to.deep.equal(alerts.map((alert) => alert.alert).sort());
    for (const rule of rules)
      expect([rule.name, rule.health, rule.lastError ?? '']).to.deep.equal([rule.name, 'ok', '']);
  });

  for (const { alert, expr } of alerts) {
    it(`alert ${alert} reads metrics the service exports: ${expr.replace(/\s+/g, ' ').trim()}`, async () => {
      const result = await query(prometheus.base, expr);
      expect(result.error, 'Prometheus error').to.equal(undefined);
      expect(result.status).to.equal('success');
      const exported = await query(prometheus.base, 'count by (__name__) ({job=~".+", __name__=~"job_manager_.+"})');
      const names = new Set(
        ((exported.data?.result ?? []) as Array<{ metric: { __name__: string } }>).map(
          (series) => series.metric.__name__,
        ),
      );
      // The maintenance loop (message retention) brings its metrics with it; on a build without it they are absent.
      const maintenanceLoop = [...names].some((name) => name.startsWith('job_manager_maintenance_'));
      for (const metric of metricNamesIn(expr).filter((name) => name.startsWith('job_manager_'))) {
        if (metric.startsWith('job_manager_maintenance_') && !maintenanceLoop) continue;
        expect(names.has(metric), `${metric} in the scrape`).to.equal(true);
      }
      if (metricNamesIn(expr).includes('up')) {
        expect((await query(prometheus.base, 'up{job="job-manager"}')).data?.result).to.have.length(1);
      }
    });
  }

  it('counts one replica with one service instance, while Prometheus scrapes itself too', async () => {
    const replicas = queries.find((q) => q.panel === 'Replicas');
    expect(replicas, 'a "Replicas" panel').to.not.equal(undefined);
    const self = await query(prometheus.base, 'up{job="prometheus"}');
    expect(self.data?.result, 'Prometheus scrapes itself').to.have.length(1);
    const result = await query(prometheus.base, substituteGrafanaVariables(replicas!.expr));
    const samples = result.data?.result as Array<{ value: [number, string] }>;
    expect(samples).to.have.length(1);
    expect(Number(samples[0]!.value[1])).to.equal(1);
  });

  it('plots memory and CPU of the service only', async () => {
    for (const title of ['Resident memory', 'CPU']) {
      const panel = queries.find((q) => q.panel === title);
      expect(panel, title).to.not.equal(undefined);
      const result = await query(prometheus.base, substituteGrafanaVariables(panel!.expr));
      const series = result.data?.result as Array<{ metric: Record<string, string> }>;
      expect(
        series.map((s) => s.metric.job),
        title,
      ).to.deep.equal(['job-manager']);
    }
  });
});
