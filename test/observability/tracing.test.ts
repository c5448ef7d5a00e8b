import { spawnSync } from 'node:child_process';
import { createServer, type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import { expect } from 'chai';
import { LiveConfig } from '../../src/config/live-config.ts';
import { silentLogger } from '../../src/observability/logger.ts';
import { formatTraceparent, parseTraceparent } from '../../src/observability/trace-context.ts';
import { type Service, startService } from '../../src/service.ts';
import { type RunningSink, startSink } from '../../src/sink/server.ts';
import { type OtlpReceiver, startOtlpReceiver } from '../support/otlp-receiver.ts';
import { useTestDatabase } from '../support/postgres.ts';
import { projectRoot } from '../support/processes.ts';
import { api, eventually } from '../support/service.ts';

describe('W3C traceparent', () => {
  it('reads a valid header and writes it back unchanged', () => {
    const header = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
    expect(parseTraceparent(header)).to.deep.equal({
      traceId: '4bf92f3577b34da6a3ce929d0e0e4736',
      spanId: '00f067aa0ba902b7',
      sampled: true,
    });
    expect(formatTraceparent(parseTraceparent(header)!)).to.equal(header);
    expect(parseTraceparent('00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00')!.sampled).to.equal(false);
  });

  it('reads a future version with more fields, as W3C asks', () => {
    expect(parseTraceparent('01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-03-more')).to.deep.equal({
      traceId: '4bf92f3577b34da6a3ce929d0e0e4736',
      spanId: '00f067aa0ba902b7',
      sampled: true,
    });
  });

  for (const [header, why] of [
    [undefined, 'absent'],
    ['', 'empty'],
    ['00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-01', 'uppercase hex'],
    ['00-00000000000000000000000000000000-00f067aa0ba902b7-01', 'all-zero trace id'],
    ['00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01', 'all-zero span id'],
    ['ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01', 'version ff'],
    ['00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra', 'version 00 with more fields'],
    ['00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01', 'trace id too short'],
    ['00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1', 'flags one digit'],
    ['00_4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7_01', 'wrong separator'],
  ] as const) {
    it(`ignores an invalid header: ${why}`, () => {
      expect(parseTraceparent(header)).to.equal(undefined);
    });
  }
});

/**
 * Loads the whole service's module graph in a child process, builds the
 * tracing `settings` ask for, starts one span, and reports every
 * `@opentelemetry/*` module that was resolved (a module hook sees every
 * import and require).
 */
function openTelemetryModulesLoaded(env: Record<string, string>): { exporting: boolean; modules: string[] } {
  const script = `
    import { registerHooks } from 'node:module';
    const seen = new Set();
    registerHooks({
      resolve(specifier, context, next) {
        const result = next(specifier, context);
        const at = result.url.lastIndexOf('/node_modules/@opentelemetry/');
        if (at >= 0) seen.add(result.url.slice(at + 14).split('/').slice(0, 2).join('/'));
        return result;
      },
    });
    await import('./src/service.ts');
    const { resolveConfig, tracingOptions } = await import('./src/config/config.ts');
    const { createTracing } = await import('./src/observability/create-tracing.ts');
    const tracing = await createTracing(tracingOptions(resolveConfig(process.env)));
    tracing.startSpan('probe').end();
    console.log(JSON.stringify({ exporting: tracing.exporting, modules: [...seen].sort() }));
    process.exit(0);
  `;
  const child = spawnSync(process.execPath, ['--input-type=module', '-e', script], {
    cwd: projectRoot,
    env: { PATH: process.env.PATH ?? '', ...env },
    encoding: 'utf8',
    timeout: 120_000,
  });
  expect(child.status, child.stderr).to.equal(0);
  return JSON.parse(child.stdout.trim().split('\n').at(-1)!);
}

describe('tracing without an OTLP endpoint', function () {
  // Condition waits only; the bound is for a machine busy with other work.
  this.timeout(180_000);
  it('loads no OpenTelemetry SDK, exporter or resource module (an untraced pod pays nothing for them)', () => {
    const loaded = openTelemetryModulesLoaded({});
    expect(loaded.exporting).to.equal(false);
    // Only the API facade, which @redis/client and prom-client (exemplars) load by themselves, as before tracing.
    expect(loaded.modules.filter((name) => name !== '@opentelemetry/api')).to.deep.equal([]);
  });

  it('loads the SDK and only the exporter of the protocol asked for when an endpoint is set', () => {
    const json = openTelemetryModulesLoaded({
      OTEL_EXPORTER_OTLP_ENDPOINT: 'http://127.0.0.1:9',
      OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json',
      OTEL_TRACES_SAMPLER: 'always_off',
    });
    expect(json.exporting).to.equal(true);
    expect(json.modules).to.include.members([
      '@opentelemetry/sdk-trace-base',
      '@opentelemetry/exporter-trace-otlp-http',
    ]);
    expect(json.modules).to.not.include('@opentelemetry/exporter-trace-otlp-proto');
    const protobuf = openTelemetryModulesLoaded({
      OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'http://127.0.0.1:9/v1/traces',
      OTEL_TRACES_SAMPLER: 'always_off',
    });
    expect(protobuf.modules).to.include.members([
      '@opentelemetry/sdk-trace-base',
      '@opentelemetry/exporter-trace-otlp-proto',
    ]);
    expect(protobuf.modules).to.not.include('@opentelemetry/exporter-trace-otlp-http');
  });
});

for (const protocol of ['http/json', 'http/protobuf'] as const)
  describe(`tracing with an OTLP endpoint (${protocol}, to a receiver of our own)`, function () {
    // Condition waits only; the bound is for a machine busy with other work.
    this.timeout(180_000);
    const db = useTestDatabase();
    let receiver: OtlpReceiver;
    let sink: RunningSink;
    let service: Service;
    let url: string;

    before(async () => {
      receiver = await startOtlpReceiver();
      sink = await startSink();
      const live = new LiveConfig({
        DATABASE_URL: db().url,
        PORT: '0',
        LOG_LEVEL: 'silent',
        WEBHOOK_URL: `${sink.url}/webhook`,
        WEBHOOK_RETRY_BASE_MS: '20',
        WEBHOOK_RETRY_MAX_MS: '50',
        OTEL_EXPORTER_OTLP_ENDPOINT: `${receiver.url}/`,
        OTEL_EXPORTER_OTLP_PROTOCOL: protocol,
        OTEL_EXPORTER_OTLP_HEADERS: 'authorization=Bearer%20collector-token',
        OTEL_SERVICE_NAME: 'job-manager-under-test',
        OTEL_RESOURCE_ATTRIBUTES: 'deployment.environment.name=test',
        OTEL_BSP_SCHEDULE_DELAY: '50',
      });
      service = await startService(live, silentLogger());
      url = `http://127.0.0.1:${service.port}`;
      await api(url, 'PUT', '/jobs/stop', { name: 'message-sender' });
    });
    after(async () => {
      await service?.stop();
      await sink?.close();
      await receiver?.close();
    });

    it('exports intake, run, claim and attempt spans, linked, with the message id and the status of each attempt', async () => {
      const traceId = '5af7651916cd43dd8448eb211c80319c';
      const posted = await api(
        url,
        'POST',
        '/messages',
        { to: '+905551230001', content: 'traced' },
        { traceparent: `00-${traceId}-b7ad6b7169203331-01` },
      );
      expect(posted.status).to.equal(201);
      const id = posted.body.id as string;
      sink.configure({ statusCode: 503 });
      await api(url, 'POST', '/jobs', {
        name: 'traced',
        handler: 'send-messages',
        intervalSeconds: 1,
        batchSize: 5,
        active: true,
      });
      await eventually(
        async () => sink.received().items.length,
        (count) => count >= 1,
        { timeoutMs: 60_000 },
      );
      sink.configure({ statusCode: undefined });
      await eventually(
        () => api(url, 'GET', `/messages/${id}`).then((answer) => answer.body.status),
        (status) => status === 'sent',
        { timeoutMs: 60_000 },
      );
      const headers = sink.received().items.map((item) => parseTraceparent(item.traceparent ?? undefined)!);
      const attempts = await eventually(
        async () =>
          receiver.spans().filter((span) => span.attributes['messaging.message.id'] === id && span.kind === 3),
        (spans) => spans.length === headers.length,
        { timeoutMs: 60_000 },
      );
      const spans = receiver.spans();
      const intake = spans.find((span) => span.kind === 2 && span.attributes['messaging.message.id'] === id)!;
      expect(intake, 'the intake server span').to.not.equal(undefined);
      expect(intake).to.include({ traceId, parentSpanId: 'b7ad6b7169203331', name: 'POST /messages' });
      expect(intake.attributes).to.include({ 'http.route': '/messages', 'http.response.status_code': 201 });
      expect(intake.resource).to.include({
        'service.name': 'job-manager-under-test',
        'deployment.environment.name': 'test',
      });

      // Each attempt: the message's trace, child of the intake span, its span id the webhook's traceparent.
      expect(attempts.map((span) => span.spanId).sort()).to.deep.equal(headers.map((header) => header.spanId).sort());
      for (const attempt of attempts) {
        expect(attempt).to.include({ traceId, parentSpanId: intake.spanId, name: 'POST webhook' });
        expect(attempt.attributes['job_manager.message.id']).to.equal(id);
      }
      const statuses = attempts.map((span) => span.attributes['http.response.status_code']).sort();
      expect(statuses.at(-1)).to.equal(503);
      expect(statuses).to.include(202);
      const failed = attempts.find((span) => span.attributes['http.response.status_code'] === 503)!;
      expect(failed.statusCode, 'a failed attempt is an error span').to.equal(2);

      // The claim that took the message: a child of the run's span, linked to the message's trace both ways.
      const claimSpanIds = attempts.map((attempt) => attempt.links[0]?.spanId);
      const claims = spans.filter((span) => span.name === 'claim messages' && claimSpanIds.includes(span.spanId));
      expect(claims).to.have.length(attempts.length);
      // A run span is exported when its run ends, which may be after the message's last attempt.
      const withRuns = await eventually(
        async () => receiver.spans(),
        (all) => claims.every((claim) => all.some((span) => span.spanId === claim.parentSpanId)),
        { timeoutMs: 60_000 },
      );
      for (const claim of claims) {
        expect(claim.links).to.deep.include({ traceId, spanId: intake.spanId });
        const run = withRuns.find((span) => span.spanId === claim.parentSpanId)!;
        expect(run, 'the run span').to.not.equal(undefined);
        expect(run).to.include({ name: 'run traced', traceId: claim.traceId, kind: 5 });
        expect(run.attributes['job_manager.job.name']).to.equal('traced');
      }
      expect(receiver.requests()[0]!.headers.authorization).to.equal('Bearer collector-token');
    });
  });

describe('tracing: a collector that never answers', function () {
  // Condition waits only; the bound is for a machine busy with other work.
  this.timeout(180_000);
  const db = useTestDatabase();

  it('does not hold the shutdown past its deadline: the export still waiting is given up', async () => {
    const held: IncomingMessage[] = [];
    let givenUp = 0;
    // Answers nothing; counts the exports their client gave up on (closed the connection).
    const collector = createServer((request) => {
      held.push(request);
      request.socket.once('close', () => givenUp++);
    });
    await new Promise<void>((resolve) => collector.listen(0, '127.0.0.1', resolve));
    try {
      const live = new LiveConfig({
        DATABASE_URL: db().url,
        PORT: '0',
        LOG_LEVEL: 'silent',
        OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${(collector.address() as AddressInfo).port}`,
        OTEL_BSP_SCHEDULE_DELAY: '20',
      });
      const service = await startService(live, silentLogger());
      const posted = await api(`http://127.0.0.1:${service.port}`, 'POST', '/messages', {
        to: '+905551230009',
        content: 'x',
      });
      expect(posted.status).to.equal(201);
      await eventually(
        async () => held.length,
        (count) => count >= 1,
      );
      await service.stop(Date.now() + 200);
      // The exporter gives up on a request only after its own 10 s timeout; stop() returned first.
      expect(givenUp).to.equal(0);
    } finally {
      collector.closeAllConnections();
      await new Promise((resolve) => collector.close(resolve));
    }
  });
});
