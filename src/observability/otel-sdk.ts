/**
 * The OpenTelemetry implementation of `Tracing` (tracing.ts). Imported only
 * when an OTLP endpoint is configured, so the SDK and the exporters stay out
 * of an untraced pod's memory: nothing else imports this file statically.
 *
 * Spans start from explicit W3C contexts (a message's stored `traceparent`,
 * a run's span), never from an ambient context: no context manager, no
 * global provider, no instrumentation patching other modules. Every setting
 * comes from src/config/ (OTEL_*), passed in; none is left to the SDK's own
 * environment lookups except the exporter's compression and timeout.
 */
import {
  type Attributes,
  type Link,
  SpanKind as OtelSpanKind,
  ROOT_CONTEXT,
  type SpanContext,
  SpanStatusCode,
  TraceFlags,
  trace,
} from '@opentelemetry/api';
import { resourceFromAttributes } from '@opentelemetry/resources';
import {
  AlwaysOffSampler,
  AlwaysOnSampler,
  BasicTracerProvider,
  BatchSpanProcessor,
  ParentBasedSampler,
  type Sampler,
  type SpanExporter,
  TraceIdRatioBasedSampler,
} from '@opentelemetry/sdk-trace-base';
import { ATTR_SERVICE_NAME } from '@opentelemetry/semantic-conventions';
import type { TraceContext } from './trace-context.ts';
import type { Span, SpanKind, Tracing, TracingOptions } from './tracing.ts';

const kinds: Record<SpanKind, OtelSpanKind> = {
  internal: OtelSpanKind.INTERNAL,
  server: OtelSpanKind.SERVER,
  client: OtelSpanKind.CLIENT,
  consumer: OtelSpanKind.CONSUMER,
  producer: OtelSpanKind.PRODUCER,
};

/** The SDK with a batch span processor and the OTLP exporter of `options.protocol` (only that one is loaded). */
export async function createOpenTelemetryTracing(options: TracingOptions & { tracesUrl: string }): Promise<Tracing> {
  const exporter = await exporterOf(options);
  const provider = new BasicTracerProvider({
    resource: resourceFromAttributes({ ...options.resourceAttributes, [ATTR_SERVICE_NAME]: options.serviceName }),
    sampler: samplerOf(options),
    spanProcessors: [new BatchSpanProcessor(exporter, { scheduledDelayMillis: options.batchDelayMs })],
  });
  const tracer = provider.getTracer('job-manager');
  return {
    exporting: true,
    startSpan(name, spanOptions = {}) {
      const parent = spanOptions.parent
        ? trace.setSpanContext(ROOT_CONTEXT, spanContextOf(spanOptions.parent))
        : ROOT_CONTEXT;
      const span = tracer.startSpan(
        name,
        {
          kind: kinds[spanOptions.kind ?? 'internal'],
          attributes: spanOptions.attributes as Attributes | undefined,
          links: spanOptions.links?.map(linkOf),
          root: spanOptions.parent === undefined,
        },
        parent,
      );
      const own = span.spanContext();
      const context: TraceContext = {
        traceId: own.traceId,
        spanId: own.spanId,
        sampled: (own.traceFlags & TraceFlags.SAMPLED) === TraceFlags.SAMPLED,
      };
      const wrapped: Span = {
        context,
        setAttributes: (attributes) => void span.setAttributes(attributes),
        addLinks: (links) => void span.addLinks(links.map(linkOf)),
        fail: (description) => void span.setStatus({ code: SpanStatusCode.ERROR, message: description }),
        end: () => span.end(),
      };
      return wrapped;
    },
    shutdown: () => provider.shutdown(),
  };
}

async function exporterOf(options: TracingOptions & { tracesUrl: string }): Promise<SpanExporter> {
  const config = { url: options.tracesUrl, headers: options.headers };
  if (options.protocol === 'http/json') {
    const { OTLPTraceExporter } = await import('@opentelemetry/exporter-trace-otlp-http');
    return new OTLPTraceExporter(config);
  }
  const { OTLPTraceExporter } = await import('@opentelemetry/exporter-trace-otlp-proto');
  return new OTLPTraceExporter(config);
}

function spanContextOf(context: TraceContext): SpanContext {
  return {
    traceId: context.traceId,
    spanId: context.spanId,
    traceFlags: context.sampled ? TraceFlags.SAMPLED : TraceFlags.NONE,
    isRemote: true,
  };
}

function linkOf(context: TraceContext): Link {
  return { context: spanContextOf(context) };
}

function samplerOf(options: TracingOptions): Sampler {
  const ratio = new TraceIdRatioBasedSampler(options.samplerRatio);
  switch (options.sampler) {
    case 'always_on':
      return new AlwaysOnSampler();
    case 'always_off':
      return new AlwaysOffSampler();
    case 'traceidratio':
      return ratio;
    case 'parentbased_always_off':
      return new ParentBasedSampler({ root: new AlwaysOffSampler() });
    case 'parentbased_traceidratio':
      return new ParentBasedSampler({ root: ratio });
    default:
      return new ParentBasedSampler({ root: new AlwaysOnSampler() });
  }
}
