/**
 * Chooses the tracing implementation at start-up. The only way to the
 * OpenTelemetry SDK (otel-sdk.ts) is the dynamic import below, taken only
 * when an OTLP endpoint is set: a pod without one never loads the SDK or an
 * exporter (test/observability/tracing.test.ts proves it).
 */
import { type Tracing, type TracingOptions, untraced } from './tracing.ts';

/**
 * The tracing this pod runs with: OpenTelemetry when `options.tracesUrl` is
 * set (the SDK and the exporter of `options.protocol` imported now), the
 * untraced implementation otherwise.
 */
export async function createTracing(options: TracingOptions): Promise<Tracing> {
  if (!options.tracesUrl) return untraced;
  const { createOpenTelemetryTracing } = await import('./otel-sdk.ts');
  return createOpenTelemetryTracing({ ...options, tracesUrl: options.tracesUrl });
}
