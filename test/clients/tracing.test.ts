// Traces in a real Jaeger (v1.75.0's `jaeger`, the v2 collector, built from
// the Go module proxy by scripts/build-jaeger.sh): the service as `npm start`
// runs it exports over OTLP, once with http/protobuf and once with http/json;
// a message posted with a traceparent is delivered after one retry, and its
// trace, read back over Jaeger's query API, holds the intake span and both
// attempt spans (the message id on each, the trace id of the webhook's
// traceparent), linked to the claims, whose own trace holds the job run.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { homedir, tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'chai';
import { findFreePort } from '../../src/db/embedded.ts';
import { parseTraceparent } from '../../src/observability/trace-context.ts';
import { type RunningSink, startSink } from '../../src/sink/server.ts';
import { useTestDatabase } from '../support/postgres.ts';
import { launch, type TestProcess } from '../support/processes.ts';
import { api, eventually } from '../support/service.ts';
import { type RunningService, startService } from './support.ts';

const jaegerBinary =
  process.env.JAEGER_BIN ??
  join(process.env.XDG_CACHE_HOME ?? join(homedir(), '.cache'), 'job-manager/jaeger-1.75.0/jaeger');
const goAvailable = spawnSync('go', ['version']).status === 0;

/** A span as Jaeger's query API (`GET /api/traces/{id}`) returns it. */
interface JaegerSpan {
  traceID: string;
  spanID: string;
  operationName: string;
  references: Array<{ refType: 'CHILD_OF' | 'FOLLOWS_FROM'; traceID: string; spanID: string }>;
  tags: Array<{ key: string; value: string | number | boolean }>;
  processID: string;
}
interface JaegerTrace {
  spans: JaegerSpan[];
  processes: Record<string, { serviceName: string }>;
}

const tag = (span: JaegerSpan, key: string) => span.tags.find((t) => t.key === key)?.value;
const parentOf = (span: JaegerSpan) => span.references.find((ref) => ref.refType === 'CHILD_OF');

/** Jaeger with in-memory storage, OTLP/HTTP and its query API on free loopback ports. */
async function startJaeger(): Promise<TestProcess & { otlp: string; query: string; dir: string }> {
  const [otlp, query, queryGrpc, health] = [
    await findFreePort(),
    await findFreePort(),
    await findFreePort(),
    await findFreePort(),
  ];
  const dir = mkdtempSync(join(tmpdir(), 'jm-jaeger-'));
  const config = join(dir, 'jaeger.yaml');
  writeFileSync(
    config,
    `service:
  extensions: [jaeger_storage, jaeger_query, healthcheckv2]
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [jaeger_storage_exporter]
  telemetry:
    metrics:
      level: none
    logs:
      level: warn
extensions:
  healthcheckv2:
    use_v2: true
    http:
      endpoint: 127.0.0.1:${health}
  jaeger_storage:
    backends:
      memstore:
        memory:
          max_traces: 10000
  jaeger_query:
    storage:
      traces: memstore
    http:
      endpoint: 127.0.0.1:${query}
    grpc:
      endpoint: 127.0.0.1:${queryGrpc}
receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:${otlp}
exporters:
  jaeger_storage_exporter:
    trace_storage: memstore
`,
  );
  const child = launch(jaegerBinary, { args: [`--config=file:${config}`], keepLines: 500 });
  const jaeger = Object.assign(child, {
    otlp: `http://127.0.0.1:${otlp}`,
    query: `http://127.0.0.1:${query}`,
    dir,
  });
  await eventually(
    () =>
      fetch(`${jaeger.query}/api/services`)
        .then((response) => response.ok)
        .catch(() => false),
    (ok) => ok || !child.alive,
    { timeoutMs: 60_000, intervalMs: 250 },
  );
  if (!child.alive) throw new Error(`jaeger exited:\n${child.tail()}`);
  return jaeger;
}

async function jaegerTrace(query: string, traceId: string): Promise<JaegerTrace | undefined> {
  const response = await fetch(`${query}/api/traces/${traceId}`);
  if (!response.ok) return undefined;
  const body = (await response.json()) as { data?: JaegerTrace[] };
  return body.data?.[0];
}

describe('tracing: spans in a real Jaeger', function () {
  this.timeout(180_000);
  const db = useTestDatabase();
  let jaeger: Awaited<ReturnType<typeof startJaeger>> | undefined;
  let sink: RunningSink;

  before(async function () {
    if (!existsSync(jaegerBinary)) {
      if (!goAvailable) {
        console.log(`    Go is not installed, so Jaeger cannot be built (${jaegerBinary}): skipping the Jaeger test`);
        this.skip();
      }
      throw new Error(`no Jaeger at ${jaegerBinary}: run scripts/build-jaeger.sh (CI's .ci/run does)`);
    }
    jaeger = await startJaeger();
    sink = await startSink();
  });
  after(async () => {
    await sink?.close();
    await jaeger?.stop();
    if (jaeger) rmSync(jaeger.dir, { recursive: true, force: true });
  });

  for (const protocol of ['http/protobuf', 'http/json'] as const) {
    describe(`exported over ${protocol}`, () => {
      let service: RunningService;
      const serviceName = `job-manager-${protocol.replace('/', '-')}`;
      before(async function () {
        if (!jaeger) this.skip();
        service = await startService({
          DATABASE_URL: db().url,
          WEBHOOK_URL: `${sink.url}/webhook`,
          WEBHOOK_RETRY_BASE_MS: '20',
          WEBHOOK_RETRY_MAX_MS: '50',
          OTEL_EXPORTER_OTLP_ENDPOINT: jaeger!.otlp,
          OTEL_EXPORTER_OTLP_PROTOCOL: protocol,
          OTEL_SERVICE_NAME: serviceName,
          OTEL_BSP_SCHEDULE_DELAY: '200',
        });
        // Every job: the other protocol's job shares this database and would otherwise claim this section's message.
        await api(service.url, 'PUT', '/jobs/stop');
      });
      after(async () => {
        await service?.stop();
      });

      it('holds the intake, run, claim and attempt spans of a message delivered after one retry', async () => {
        const traceId =
          protocol === 'http/json' ? '6e0c63257de34c926f9efcd03927272e' : '4bf92f3577b34da6a3ce929d0e0e4736';
        sink.clear();
        sink.configure({ statusCode: 503 });
        const posted = await api(
          service.url,
          'POST',
          '/messages',
          { to: '+905551112233', content: `traced over ${protocol}` },
          { traceparent: `00-${traceId}-00f067aa0ba902b7-01` },
        );
        expect(posted.status).to.equal(201);
        const id = posted.body.id as string;
        await api(service.url, 'POST', '/jobs', {
          name: `traced-${protocol.replace('/', '-')}`,
          handler: 'send-messages',
          intervalSeconds: 1,
          batchSize: 5,
          active: true,
        });
        await eventually(
          async () => sink.received().items.length,
          (count) => count >= 1,
          { timeoutMs: 30_000 },
        );
        sink.configure({ statusCode: undefined });
        const delivered = await eventually(
          () => api(service.url, 'GET', `/messages/${id}`).then((answer) => answer.body),
          (message) => message.status === 'sent',
          { timeoutMs: 30_000 },
        );
        const webhookCalls = sink.received().items.filter((item) => item.idempotencyKey === id);
        expect(webhookCalls.length).to.equal(delivered.attempts).and.to.be.at.least(2);
        const headers = webhookCalls.map((item) => parseTraceparent(item.traceparent ?? undefined)!);
        for (const header of headers) expect(header.traceId, "the webhook's traceparent").to.equal(traceId);

        // The message's trace: the intake server span, and one client span per attempt (its span id the header's).
        const trace = await eventually(
          () => jaegerTrace(jaeger!.query, traceId),
          (found) =>
            (found?.spans.filter((span) => tag(span, 'messaging.message.id') === id).length ?? 0) >= 1 + headers.length,
          { timeoutMs: 30_000, intervalMs: 250 },
        );
        const ofMessage = trace!.spans.filter((span) => tag(span, 'messaging.message.id') === id);
        const intake = ofMessage.find((span) => tag(span, 'span.kind') === 'server')!;
        expect(intake.operationName).to.equal('POST /messages');
        expect(parentOf(intake)).to.include({ traceID: traceId, spanID: '00f067aa0ba902b7' });
        expect(trace!.processes[intake.processID]!.serviceName).to.equal(serviceName);
        const attempts = ofMessage.filter((span) => tag(span, 'span.kind') === 'client');
        expect(attempts.map((span) => span.spanID).sort()).to.deep.equal(headers.map((h) => h.spanId).sort());
        expect(attempts.map((span) => tag(span, 'http.response.status_code')).sort()).to.include.members([202, 503]);
        for (const attempt of attempts) {
          expect(attempt.traceID).to.equal(traceId);
          expect(parentOf(attempt)?.spanID, 'child of the intake span').to.equal(intake.spanID);
          expect(tag(attempt, 'job_manager.message.id')).to.equal(id);
        }

        // Each attempt links to its claim; the claim's trace holds the job run it belongs to.
        for (const attempt of attempts) {
          const link = attempt.references.find((ref) => ref.refType === 'FOLLOWS_FROM');
          expect(link, 'the link to the claim').to.not.equal(undefined);
          const runTrace = await eventually(
            () => jaegerTrace(jaeger!.query, link!.traceID),
            // The run span arrives when the run ends, maybe after the attempt.
            (found) => {
              const claim = found?.spans.find((span) => span.spanID === link!.spanID);
              return claim !== undefined && found!.spans.some((span) => span.spanID === parentOf(claim)?.spanID);
            },
            { timeoutMs: 30_000, intervalMs: 250 },
          );
          const claim = runTrace!.spans.find((span) => span.spanID === link!.spanID)!;
          expect(claim.operationName).to.equal('claim messages');
          expect(claim.references.some((ref) => ref.refType === 'FOLLOWS_FROM' && ref.traceID === traceId)).to.equal(
            true,
          );
          const run = runTrace!.spans.find((span) => span.spanID === parentOf(claim)?.spanID)!;
          expect(run.operationName).to.equal(`run traced-${protocol.replace('/', '-')}`);
        }
      });
    });
  }
});
