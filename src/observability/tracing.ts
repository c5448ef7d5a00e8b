/**
 * Tracing, as the rest of the service sees it: a small interface that starts
 * spans from explicit W3C contexts (no ambient context, no async hooks), with
 * two implementations:
 *
 * - untraced (no OTLP endpoint configured): spans record nothing, but each
 *   still gets real ids (node:crypto), so a message keeps its trace id and
 *   every webhook request carries a `traceparent` all the same;
 * - OpenTelemetry (an endpoint is set): the SDK, exporting OTLP over
 *   http/protobuf or http/json. Its modules are imported dynamically, only
 *   in that case (create-tracing.ts, otel-sdk.ts): an untraced pod never
 *   loads them.
 */
import { newSpanId, newTraceId, type TraceContext } from './trace-context.ts';

export type { TraceContext } from './trace-context.ts';

export type SpanKind = 'internal' | 'server' | 'client' | 'consumer' | 'producer';
export type SpanAttributes = Record<string, string | number | boolean>;

export interface SpanOptions {
  kind?: SpanKind;
  /** The context this span continues (its parent); undefined: a new trace. */
  parent?: TraceContext | undefined;
  /** Related spans of other traces (a batch's messages, the run that claimed a message). */
  links?: TraceContext[];
  attributes?: SpanAttributes;
}

export interface Span {
  /** This span's own context: what a child (or a `traceparent` header) continues. */
  readonly context: TraceContext;
  setAttributes(attributes: SpanAttributes): void;
  /** Links added after the start (e.g. the messages a claim returned). */
  addLinks(links: TraceContext[]): void;
  /** Marks the span as failed with a short description (no secrets). */
  fail(description: string): void;
  /** Ends the span; later calls do nothing. */
  end(): void;
}

export interface Tracing {
  /** True when spans are exported (an OTLP endpoint is configured). */
  readonly exporting: boolean;
  startSpan(name: string, options?: SpanOptions): Span;
  /** Exports what is still buffered (bounded by the exporter's timeout) and stops. */
  shutdown(): Promise<void>;
}

export type OtlpProtocol = 'http/protobuf' | 'http/json';
export type TraceSampler =
  | 'always_on'
  | 'always_off'
  | 'traceidratio'
  | 'parentbased_always_on'
  | 'parentbased_always_off'
  | 'parentbased_traceidratio';

/** The OpenTelemetry settings (OTEL_*), as src/config/ parsed them. */
export interface TracingOptions {
  /** The full OTLP traces URL (`…/v1/traces`); undefined: nothing is exported and the SDK is not loaded. */
  tracesUrl: string | undefined;
  protocol: OtlpProtocol;
  /** Extra request headers for the collector (OTEL_EXPORTER_OTLP_HEADERS), e.g. an auth token. */
  headers: Record<string, string>;
  serviceName: string;
  /** OTEL_RESOURCE_ATTRIBUTES, decoded. */
  resourceAttributes: Record<string, string>;
  sampler: TraceSampler;
  /** The ratio of the `*traceidratio` samplers, 0..1. */
  samplerRatio: number;
  /** Milliseconds between two exports of finished spans (OTEL_BSP_SCHEDULE_DELAY). */
  batchDelayMs: number;
}

/** Tracing that records nothing; its spans carry fresh ids, continuing the parent's trace and sampled flag. */
export const untraced: Tracing = {
  exporting: false,
  startSpan(_name, options = {}) {
    const context: TraceContext = {
      traceId: options.parent?.traceId ?? newTraceId(),
      spanId: newSpanId(),
      sampled: options.parent?.sampled ?? false,
    };
    return { context, setAttributes() {}, addLinks() {}, fail() {}, end() {} };
  },
  shutdown: async () => {},
};

/** `{ traceId, spanId }` of a span, for a pino child logger: so a log line and its trace meet (Loki, Jaeger). */
export function logFieldsOf(context: TraceContext): { traceId: string; spanId: string } {
  return { traceId: context.traceId, spanId: context.spanId };
}
