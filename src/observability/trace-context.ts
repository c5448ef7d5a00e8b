/**
 * W3C Trace Context (https://www.w3.org/TR/trace-context/), the `traceparent`
 * header: parse, format, and fresh ids. Our own ~40 lines rather than
 * OpenTelemetry's propagator: that lives in `@opentelemetry/core` (not the
 * API package), and a pod that exports no spans still sends a `traceparent`
 * on every webhook request, so this must work without loading any of the SDK.
 *
 * `traceparent: 00-<trace id, 32 hex>-<parent span id, 16 hex>-<flags, 2 hex>`;
 * flag bit 0 is "sampled".
 */
import { randomFillSync } from 'node:crypto';

/** The position in a trace that a new span continues from. Ids are lowercase hex. */
export interface TraceContext {
  /** 32 hex digits, not all zero. */
  traceId: string;
  /** 16 hex digits, not all zero: the span a child names as its parent. */
  spanId: string;
  /** The W3C sampled flag: the span may have been recorded upstream. */
  sampled: boolean;
}

const traceparentPattern = /^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?$/;

/**
 * Reads a `traceparent` header value; undefined when it is absent or invalid
 * (wrong shape, uppercase hex, an all-zero id, version ff, or version 00 with
 * trailing data). The W3C rule: an invalid header is ignored and a new trace
 * begins; it is never a reason to refuse the request.
 */
export function parseTraceparent(value: string | undefined): TraceContext | undefined {
  if (value === undefined) return undefined;
  const match = traceparentPattern.exec(value.trim());
  if (!match) return undefined;
  const [, version, traceId, spanId, flags, rest] = match as unknown as [
    string,
    string,
    string,
    string,
    string,
    string?,
  ];
  if (version === 'ff' || (version === '00' && rest !== undefined)) return undefined;
  if (/^0+$/.test(traceId) || /^0+$/.test(spanId)) return undefined;
  return { traceId, spanId, sampled: (Number.parseInt(flags, 16) & 1) === 1 };
}

/** `00-<traceId>-<spanId>-<01|00>`: the header value for `context`. */
export function formatTraceparent(context: TraceContext): string {
  return `00-${context.traceId}-${context.spanId}-${context.sampled ? '01' : '00'}`;
}

/** A random 16-byte trace id (32 hex). */
export function newTraceId(): string {
  return nonZeroHex(16);
}

/** A random 8-byte span id (16 hex). */
export function newSpanId(): string {
  return nonZeroHex(8);
}

/**
 * Random bytes for ids, drawn from a pool refilled 4 KiB at a time: every
 * webhook attempt takes a span id, and one small randomBytes() call per id
 * cost more than the rest of the id's work.
 */
const pool = Buffer.alloc(4096);
let poolUsed = pool.length;

function nonZeroHex(bytes: number): string {
  for (;;) {
    if (poolUsed + bytes > pool.length) {
      randomFillSync(pool);
      poolUsed = 0;
    }
    const hex = pool.toString('hex', poolUsed, poolUsed + bytes);
    poolUsed += bytes;
    if (!/^0+$/.test(hex)) return hex;
  }
}
