// The container setup, checked without Docker: docker-compose.yml (structure,
// settings the app understands, wiring between services), the Dockerfile,
// the Prometheus/Grafana/Vault seed files it mounts, and — when a compose
// binary is installed (Debian package docker-compose) — `config` validation.

import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { expect } from 'chai';
import { parse } from 'yaml';
import { resolveConfig } from '../../src/config/config.ts';
import { listenHost } from '../../src/config/network.ts';
import { settingNames } from '../../src/config/settings.ts';
import { podEnvironment, podV8Flags } from '../../src/lib/node-runtime.ts';

const root = fileURLToPath(new URL('../..', import.meta.url));
const read = (path: string) => readFileSync(join(root, path), 'utf8');

interface Service {
  image?: string;
  build?: unknown;
  command?: string[];
  environment?: Record<string, string>;
  ports?: string[];
  volumes?: string[];
  deploy?: { replicas?: number };
  stop_grace_period?: string;
  depends_on?: Record<string, { condition: string }> | string[];
}

const compose = parse(read('docker-compose.yml'), { merge: true }) as { services: Record<string, Service> };
const services = compose.services;
const app = services.app!;
const appEnv = app.environment ?? {};

/** `vault kv put secret/job-manager KEY=VALUE ...` in deploy/vault/init.sh, as settings. */
function seededSecret(): Record<string, string> {
  const script = read('deploy/vault/init.sh');
  const put = /vault kv put "?\$SECRET"?((?:\s*\\\n\s*[A-Z0-9_]+=\S+)+)/.exec(script);
  expect(put, 'init.sh writes the secret with vault kv put').to.not.equal(null);
  return Object.fromEntries(
    [...put![1]!.matchAll(/([A-Z0-9_]+)=(\S+)/g)].map(([, key, value]) => [key!, value!.replace(/^"|"$/g, '')]),
  );
}

function composeCommand(): string[] | undefined {
  for (const candidate of [['docker-compose'], ['docker', 'compose']]) {
    const probe = spawnSync(candidate[0]!, [...candidate.slice(1), 'version'], { encoding: 'utf8' });
    if (probe.status === 0) return candidate;
  }
  return undefined;
}

describe('docker-compose.yml', () => {
  it('gives the app a stop_grace_period longer than its shutdown bound (SHUTDOWN_TIMEOUT_MS + 2 s)', () => {
    const grace = /^(\d+)(ms|s|m)$/.exec(app.stop_grace_period ?? '');
    expect(grace, `stop_grace_period ${app.stop_grace_period}`).to.not.equal(null);
    const graceMs = Number(grace![1]) * { ms: 1, s: 1_000, m: 60_000 }[grace![2] as 'ms' | 's' | 'm'];
    const config = resolveConfig({ ...appEnv, ...seededSecret() });
    expect(graceMs).to.be.greaterThan(config.shutdownTimeoutMs + 2_000);
  });

  it('has the whole stack', () => {
    for (const name of [
      'postgres',
      'vault',
      'vault-init',
      'redis',
      'redis-commander',
      'sink',
      'app',
      'prometheus',
      'grafana',
      'loki',
      'pgboss-dashboard',
    ]) {
      expect(services, name).to.have.property(name);
    }
  });

  it('sets only settings the service knows on the app, with valid values', () => {
    const known = new Set<string>(settingNames);
    const unknown = Object.keys(appEnv).filter((name) => !known.has(name));
    expect(unknown, 'unknown settings on the app service').to.deep.equal([]);
    for (const name of ['VAULT_ADDR', 'VAULT_TOKEN', 'DATABASE_URL', 'REDIS_URL', 'LOKI_URL']) {
      expect(appEnv, name).to.have.property(name);
    }
    const config = resolveConfig(appEnv);
    expect(config.databaseUrl).to.match(/^postgres:\/\/.*@postgres:5432\//);
  });

  it('protects the API reachable through lb with keys, and trusts exactly the one proxy in front', () => {
    const config = resolveConfig(appEnv);
    expect(config.apiKeys, 'API_KEYS').to.not.be.empty;
    expect(listenHost(config), 'listens beyond loopback for lb and Prometheus').to.equal('0.0.0.0');
    expect(config.allowUnauthenticated).to.equal(false);
    expect(config.trustProxy, 'TRUST_PROXY: one hop, nginx').to.equal(1);
    expect(read('deploy/nginx/nginx.conf')).to.include('proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;');
  });

  it('runs two app replicas from the Dockerfile, reached through the load balancer', () => {
    expect(app.deploy?.replicas).to.equal(2);
    expect(app.build).to.deep.include({ context: '.', dockerfile: 'Dockerfile' });
    expect(app.ports ?? [], 'replicas publish no fixed host port').to.deep.equal([]);
    expect(services.lb?.ports).to.include('8080:8080');
    expect(read('deploy/nginx/nginx.conf')).to.match(/server app:8080 resolve;/);
  });

  it('points the app at services that exist', () => {
    for (const name of ['DATABASE_URL', 'REDIS_URL', 'VAULT_ADDR', 'LOKI_URL']) {
      const host = new URL(appEnv[name]!).hostname;
      expect(services, `${name} host ${host}`).to.have.property(host);
    }
    const dependsOn = app.depends_on as Record<string, { condition: string }>;
    expect(dependsOn['vault-init']?.condition).to.equal('service_completed_successfully');
    expect(dependsOn.postgres?.condition).to.equal('service_healthy');
  });

  it('runs Vault in dev mode with root token "root" and seeds the config secret', () => {
    const vault = services.vault!;
    expect(vault.environment?.VAULT_DEV_ROOT_TOKEN_ID).to.equal('root');
    expect(appEnv.VAULT_TOKEN).to.equal('root');
    expect(services['vault-init']!.volumes).to.include('./deploy/vault:/deploy/vault:ro');
    const secret = seededSecret();
    expect(secret).to.include({ WORKER_COUNT: '5', WEBHOOK_URL: 'http://sink:3999/webhook' });
    const known = new Set<string>(settingNames.filter((name) => !name.startsWith('VAULT_')));
    expect(
      Object.keys(secret).filter((key) => !known.has(key)),
      'keys the service ignores',
    ).to.deep.equal([]);
    // The seeded secret on top of the app's environment is a valid configuration.
    const config = resolveConfig(appEnv, secret);
    expect(config.workerCount).to.equal(5);
    expect(config.webhook.url).to.equal('http://sink:3999/webhook');
  });

  it('runs the webhook sink from the same image on the port the seeded WEBHOOK_URL names', () => {
    const sink = services.sink!;
    expect(sink.build).to.deep.equal(app.build);
    // The sink binds 127.0.0.1 by default; in its container the app reaches it from another one.
    expect(sink.command).to.deep.equal(['node', 'src/sink/main.ts', '--port', '3999', '--host', '0.0.0.0']);
    expect(new URL(seededSecret().WEBHOOK_URL!).port).to.equal('3999');
  });

  it('has redis-commander on its real port with root/qwerty', () => {
    const commander = services['redis-commander']!;
    expect(commander.ports).to.include('8081:8081');
    expect(commander.environment).to.include({ HTTP_USER: 'root', HTTP_PASSWORD: 'qwerty' });
    expect(commander.environment?.REDIS_HOSTS).to.include('redis:6379');
  });

  it('runs the pg-boss dashboard as npm run dashboard does, from the app image, on the app database', () => {
    const dashboard = services['pgboss-dashboard']!;
    expect(dashboard.environment?.DATABASE_URL).to.equal(appEnv.DATABASE_URL);
    expect((dashboard as { image?: string }).image).to.equal(services.app!.image);
    expect((dashboard as { command?: string[] }).command).to.deep.equal(['node', 'src/tools/dashboard-cli.ts']);
    // The npm script `exec`s the same command (so a signal to npm reaches the dashboard).
    expect(JSON.parse(read('package.json')).scripts.dashboard).to.equal('exec node src/tools/dashboard-cli.ts');
    // The image installs production dependencies only: the dashboard must be one, pinned exactly.
    const { dependencies } = JSON.parse(read('package.json'));
    expect(dependencies['@pg-boss/dashboard']).to.match(/^\d+\.\d+\.\d+$/);
    expect(dependencies['pg-boss']).to.match(/^\d+\.\d+\.\d+$/);
  });

  it('scrapes every app replica with Prometheus', () => {
    const prometheus = parse(read('deploy/prometheus.yml'));
    const job = prometheus.scrape_configs.find((c: { job_name: string }) => c.job_name === 'job-manager');
    expect(job.metrics_path).to.equal('/metrics');
    expect(job.dns_sd_configs[0]).to.deep.include({ names: ['app'], type: 'A', port: Number(appEnv.PORT) });
  });

  it('loads every alert rule file beside the config, each tested, each alert with its runbook entry', () => {
    const prometheus = parse(read('deploy/prometheus.yml'));
    expect((services.prometheus as { volumes: string[] }).volumes).to.include.members([
      './deploy/prometheus.yml:/etc/prometheus/prometheus.yml:ro',
      './deploy/prometheus:/etc/prometheus/prometheus:ro',
    ]);
    const files = readdirSync(join(root, 'deploy/prometheus')).filter((file) => file.endsWith('.yml'));
    const testFiles = files.filter((file) => file.endsWith('_test.yml'));
    const ruleFiles = files.filter((file) => !file.endsWith('_test.yml'));
    expect([...prometheus.rule_files].sort()).to.deep.equal(ruleFiles.map((file) => `prometheus/${file}`).sort());
    const tested = testFiles.flatMap((file) => parse(read(`deploy/prometheus/${file}`)).rule_files as string[]);
    expect([...new Set(tested)].sort(), 'every rule file has promtool tests').to.deep.equal([...ruleFiles].sort());
    const docs = read('docs/observability.md');
    const alerts = ruleFiles.flatMap((file) =>
      (parse(read(`deploy/prometheus/${file}`)).groups as Array<{ rules: Array<Record<string, any>> }>).flatMap(
        (group) => group.rules.filter((rule) => rule.alert),
      ),
    );
    expect(alerts.length).to.be.at.least(5);
    for (const rule of alerts) {
      expect(rule.annotations.runbook, rule.alert).to.equal(`docs/observability.md#${rule.alert.toLowerCase()}`);
      expect(docs, `docs/observability.md explains ${rule.alert}`).to.include(`### ${rule.alert}\n`);
    }
  });

  it('has a Prometheus config promtool accepts (when installed)', function () {
    const result = spawnSync('promtool', ['check', 'config', join(root, 'deploy/prometheus.yml')], {
      encoding: 'utf8',
    });
    if ((result.error as NodeJS.ErrnoException | undefined)?.code === 'ENOENT') this.skip();
    expect(result.status, `${result.stdout}${result.stderr}`).to.equal(0);
  });

  it('provisions Grafana (admin/admin) with Prometheus and Loki datasources and the dashboards', () => {
    const grafana = services.grafana!;
    expect(grafana.environment).to.include({ GF_SECURITY_ADMIN_USER: 'admin', GF_SECURITY_ADMIN_PASSWORD: 'admin' });
    expect(grafana.volumes).to.include('./deploy/grafana/provisioning:/etc/grafana/provisioning:ro');
    expect(grafana.volumes).to.include('./deploy/grafana/dashboards:/var/lib/grafana/dashboards:ro');
    const { datasources } = parse(read('deploy/grafana/provisioning/datasources/datasources.yml'));
    const byType = Object.fromEntries(datasources.map((d: { type: string; url: string }) => [d.type, d.url]));
    expect(byType).to.deep.equal({ prometheus: 'http://prometheus:9090', loki: 'http://loki:3100' });
    const { providers } = parse(read('deploy/grafana/provisioning/dashboards/dashboards.yml'));
    expect(providers[0].options.path).to.equal('/var/lib/grafana/dashboards');
  });

  it('mounts only files that exist', () => {
    for (const [name, service] of Object.entries(services)) {
      for (const volume of service.volumes ?? []) {
        const source = volume.split(':')[0]!;
        if (source.startsWith('./')) expect(existsSync(join(root, source)), `${name}: ${source}`).to.equal(true);
      }
    }
  });

  it('validates with docker-compose config (when installed)', function () {
    const command = composeCommand();
    if (!command) this.skip(); // CI: Debian package docker-compose
    const run = (file: string) =>
      spawnSync(command![0]!, [...command!.slice(1), '--project-directory', root, '-f', file, 'config', '-q'], {
        cwd: root,
        encoding: 'utf8',
      });
    const result = run(join(root, 'docker-compose.yml'));
    expect(result.stderr.trim(), 'compose findings').to.equal('');
    expect(result.status).to.equal(0);

    // The validator is not vacuous: a broken copy fails.
    const dir = mkdtempSync(join(tmpdir(), 'compose-check-'));
    try {
      const broken = join(dir, 'docker-compose.yml');
      writeFileSync(broken, read('docker-compose.yml').replace('    deploy:\n', '    deploy_typo:\n'));
      const failed = run(broken);
      expect(failed.status).to.not.equal(0);
      expect(failed.stderr).to.include('deploy_typo');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('Dockerfile', () => {
  const dockerfile = read('Dockerfile');
  const instructions = dockerfile
    .replace(/\\\n\s*/g, ' ')
    .split('\n')
    .filter((line) => /^[A-Z]+\s/.test(line));
  const last = (keyword: string) => [...instructions].reverse().find((line) => line.startsWith(`${keyword} `));

  it('is multi-stage on Node 24 slim with production dependencies only', () => {
    const froms = instructions.filter((line) => line.startsWith('FROM '));
    expect(froms.length).to.be.at.least(2);
    expect(dockerfile).to.match(/^ARG NODE_IMAGE=node:24-slim$/m);
    expect(dockerfile).to.match(/npm ci --omit=dev/);
    expect(dockerfile).to.match(/COPY --from=deps /);
  });

  it('runs as a non-root user, with a health check on /health-alive', () => {
    expect(last('USER')).to.match(/^USER (node|[1-9]\d*)/);
    expect(last('HEALTHCHECK')).to.include('/health-alive').and.to.include('fetch(');
  });

  it('lets SIGTERM reach node (exec-form CMD, STOPSIGNAL SIGTERM)', () => {
    expect(last('STOPSIGNAL')).to.equal('STOPSIGNAL SIGTERM');
    expect(JSON.parse(last('CMD')!.slice('CMD '.length))).to.deep.equal(['node', ...podV8Flags, 'src/main.ts']);
  });

  it("starts lean: the pod's V8 flags in CMD (above), its environment, and a compile cache filled at build time", () => {
    expect(last('ENV')).to.match(/NODE_COMPILE_CACHE=\/app\/\S+/);
    for (const [name, value] of Object.entries(podEnvironment)) expect(last('ENV')).to.include(`${name}=${value}`);
    expect(instructions.some((line) => /^RUN node src\/main\.ts --warm-compile-cache\b/.test(line))).to.equal(true);
  });

  it('keeps the build context small (.dockerignore)', () => {
    const ignored = read('.dockerignore').split('\n');
    for (const entry of ['node_modules', '.git', '.data', 'test']) expect(ignored, entry).to.include(entry);
  });
});
