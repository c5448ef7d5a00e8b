// The Grafana dashboards under deploy/grafana/dashboards: every PromQL query
// must name only series the service exports (createMetrics(), including the
// default process metrics and histogram _bucket/_sum/_count series), the
// panels an operator needs must be there, and the datasources they use must
// be the provisioned ones.

import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { expect } from 'chai';
import { parse, stringify } from 'yaml';
import { createMetrics } from '../../src/observability/metrics.ts';
import { parseExposition, seriesNames } from '../support/exposition.ts';
import { metricNamesIn } from '../support/promql.ts';

const root = fileURLToPath(new URL('../..', import.meta.url));
const dashboardsDir = join(root, 'deploy/grafana/dashboards');

interface Target {
  expr?: string;
  datasource?: { type: string; uid: string };
}
interface Panel {
  id: number;
  type: string;
  title: string;
  datasource?: { type: string; uid: string };
  targets?: Target[];
  panels?: Panel[];
  gridPos: { x: number; y: number; w: number; h: number };
}

function allPanels(panels: Panel[]): Panel[] {
  return panels.flatMap((panel) => [panel, ...allPanels(panel.panels ?? [])]);
}

const dashboards = readdirSync(dashboardsDir)
  .filter((file) => file.endsWith('.json'))
  .map((file) => ({ file, json: JSON.parse(readFileSync(join(dashboardsDir, file), 'utf8')) }));

describe('Grafana dashboards', () => {
  let exported: Set<string>;

  before(async () => {
    exported = seriesNames(parseExposition(await createMetrics().registry.metrics()));
  });

  it('finds metric names in PromQL the way Prometheus would', () => {
    expect(
      metricNamesIn(
        'histogram_quantile(0.95, sum by (le, route) (rate(http_request_duration_seconds_bucket{route=~"$route"}[$__rate_interval])))',
      ),
    ).to.deep.equal(['http_request_duration_seconds_bucket']);
    expect(
      metricNamesIn('max(job_manager_jobs{status="active"}) + max(job_manager_jobs{status="in_progress"})'),
    ).to.deep.equal(['job_manager_jobs', 'job_manager_jobs']);
    expect(metricNamesIn('sum(rate(a_total[5m])) / ignoring(x) group_left sum(b) * 60 > bool 1')).to.deep.equal([
      'a_total',
      'b',
    ]);
  });

  it('exist', () => {
    expect(dashboards.map((d) => d.file)).to.include('job-manager.json');
  });

  for (const { file, json } of dashboards) {
    describe(file, () => {
      const panels = allPanels(json.panels as Panel[]);
      const promTargets = panels.flatMap((panel) =>
        (panel.targets ?? [])
          .filter((target) => (target.datasource ?? panel.datasource)?.type === 'prometheus')
          .map((target) => ({ panel: panel.title, expr: target.expr ?? '' })),
      );

      it('queries only metrics the service exports', () => {
        expect(promTargets.length).to.be.above(0);
        const unknown: string[] = [];
        for (const { panel, expr } of promTargets) {
          const names = metricNamesIn(expr);
          expect(names, `${panel}: ${expr}`).to.not.be.empty;
          // `up` is Prometheus's own series for each target it scrapes.
          for (const name of names) if (!exported.has(name) && name !== 'up') unknown.push(`${panel}: ${name}`);
        }
        expect(unknown, 'metrics named in the dashboard but not exported').to.deep.equal([]);
      });

      it("scopes every query to the service's own scrape job", () => {
        const prometheus = parse(readFileSync(join(root, 'deploy/prometheus.yml'), 'utf8'));
        const jobName = prometheus.scrape_configs[0].job_name;
        expect(jobName).to.equal('job-manager');
        for (const { panel, expr } of promTargets) {
          expect(expr, `${panel}: ${expr}`).to.include(`job="${jobName}"`);
        }
      });

      it('has PromQL that parses (promtool check rules, when installed)', function () {
        // Each query becomes a recording rule; Grafana's variables get sample values.
        const rules = promTargets.map(({ expr }, index) => ({
          record: `dashboard:query_${index}`,
          expr: expr.replaceAll('$__rate_interval', '1m').replaceAll('$__range', '1h').replaceAll('$__interval', '1m'),
        }));
        const dir = mkdtempSync(join(tmpdir(), 'dashboard-promql-'));
        try {
          const file = join(dir, 'rules.yml');
          writeFileSync(file, stringify({ groups: [{ name: 'dashboard', rules }] }));
          const result = spawnSync('promtool', ['check', 'rules', file], { encoding: 'utf8' });
          if ((result.error as NodeJS.ErrnoException | undefined)?.code === 'ENOENT') this.skip();
          expect(result.status, `${result.stdout}${result.stderr}`).to.equal(0);
        } finally {
          rmSync(dir, { recursive: true, force: true });
        }
      });

      it('uses only provisioned datasources', () => {
        const { datasources } = parse(
          readFileSync(join(root, 'deploy/grafana/provisioning/datasources/datasources.yml'), 'utf8'),
        );
        const provisioned = new Set(datasources.map((d: { type: string; uid: string }) => `${d.type}/${d.uid}`));
        for (const panel of panels.filter((p) => p.type !== 'row')) {
          for (const source of [panel.datasource, ...(panel.targets ?? []).map((t) => t.datasource)]) {
            if (source) expect(provisioned.has(`${source.type}/${source.uid}`), panel.title).to.equal(true);
          }
        }
      });

      it('has unique panel ids inside the 24-column grid', () => {
        const ids = panels.map((panel) => panel.id);
        expect(new Set(ids).size).to.equal(ids.length);
        for (const { title, gridPos } of panels) expect(gridPos.x + gridPos.w, title).to.be.at.most(24);
      });
    });
  }

  describe('job-manager.json', () => {
    const json = dashboards.find((d) => d.file === 'job-manager.json')!.json;
    const panels = allPanels(json.panels as Panel[]);
    const panel = (title: string) => {
      const found = panels.find((p) => p.title === title && p.type !== 'row');
      expect(found, `panel "${title}"`).to.not.equal(undefined);
      return found!;
    };
    const exprs = (title: string) => (panel(title).targets ?? []).map((t) => t.expr ?? '').join('\n');

    it('has the panels an operator needs', () => {
      expect(exprs('Throughput')).to.include('rate(job_manager_messages_sent_total');
      expect(exprs('Failures by reason')).to.match(/sum by \(reason\) \(rate\(job_manager_messages_failed_total/);
      const webhook = exprs('Webhook latency (p50 / p95 / p99)');
      for (const q of ['0.5', '0.95', '0.99']) {
        expect(webhook).to.include(
          `histogram_quantile(${q}, sum by (le) (rate(job_manager_webhook_request_duration_seconds_bucket`,
        );
      }
      expect(exprs('Pending backlog')).to.include('job_manager_messages_pending');
      expect(exprs('Trigger lateness')).to.include('job_manager_job_trigger_lateness_seconds_bucket');
      expect(exprs('Job states')).to.match(/by \(status\) \(job_manager_jobs\{job="job-manager"\}\)/);
      expect(exprs('Workers busy')).to.include('job_manager_workers_busy');
      expect(exprs('HTTP latency by route (p95)')).to.match(
        /by \(le, method, route\).*http_request_duration_seconds_bucket/,
      );
      expect(exprs('Job runs by outcome')).to.match(/by \(job, outcome\).*job_manager_job_runs_total/);
      expect(exprs('Delivery attempt latency by status class (p50 / p95)')).to.include(
        'sum by (le, status_class) (rate(job_manager_webhook_request_duration_seconds_bucket',
      );
      expect(exprs('Oldest due message waiting')).to.include('job_manager_oldest_due_pending_message_age_seconds');
    });

    it('has a Loki logs panel on the service labels', () => {
      const logs = panel('Logs');
      expect(logs.type).to.equal('logs');
      expect(logs.datasource?.type).to.equal('loki');
      expect(logs.targets?.[0]?.expr).to.match(/^\{app="job-manager", level=~"\$level"\}/);
    });
  });
});
