import { createServer, type IncomingHttpHeaders } from 'node:http';
import type { AddressInfo } from 'node:net';

/** One span as an OTLP/JSON export carries it, flattened: ids as hex, attributes as plain values. */
export interface ReceivedSpan {
  traceId: string;
  spanId: string;
  parentSpanId: string | undefined;
  name: string;
  /** OTLP SpanKind: 1 internal, 2 server, 3 client, 4 producer, 5 consumer. */
  kind: number;
  attributes: Record<string, string | number | boolean>;
  links: Array<{ traceId: string; spanId: string }>;
  /** OTLP status code: 0 unset, 1 ok, 2 error. */
  statusCode: number;
  /** The exporting resource's attributes (service.name, …). */
  resource: Record<string, string | number | boolean>;
}

export interface OtlpReceiver {
  /** Base URL, e.g. http://127.0.0.1:4318: what OTEL_EXPORTER_OTLP_ENDPOINT is set to. */
  url: string;
  spans(): ReceivedSpan[];
  /** Headers of every export request, in order. */
  requests(): Array<{ path: string; headers: IncomingHttpHeaders }>;
  close(): Promise<void>;
}

/**
 * An OTLP/HTTP receiver (POST /v1/traces, `http/json` or `http/protobuf`),
 * written for the tests: it keeps every span it is sent and answers 200, as a
 * collector does. The Jaeger test checks both encodings with a real backend.
 */
export async function startOtlpReceiver(): Promise<OtlpReceiver> {
  const spans: ReceivedSpan[] = [];
  const requests: Array<{ path: string; headers: IncomingHttpHeaders }> = [];
  const server = createServer((request, response) => {
    const chunks: Buffer[] = [];
    request.on('data', (chunk: Buffer) => chunks.push(chunk));
    request.on('end', () => {
      requests.push({ path: request.url ?? '', headers: request.headers });
      const type = request.headers['content-type'] ?? '';
      if (request.method !== 'POST' || request.url !== '/v1/traces' || !/json|protobuf/.test(type)) {
        response.writeHead(415).end();
        return;
      }
      const body = Buffer.concat(chunks);
      if (type.includes('protobuf')) {
        spans.push(...flatten(decodeExportRequest(body)));
        response.writeHead(200, { 'content-type': 'application/x-protobuf' }).end();
      } else {
        spans.push(...flatten(JSON.parse(body.toString('utf8'))));
        response.writeHead(200, { 'content-type': 'application/json' }).end('{}');
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    spans: () => [...spans],
    requests: () => [...requests],
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}

type OtlpValue = { stringValue?: string; intValue?: string | number; boolValue?: boolean; doubleValue?: number };
type OtlpAttribute = { key: string; value: OtlpValue };

function plainValue(value: OtlpValue): string | number | boolean {
  if (value.stringValue !== undefined) return value.stringValue;
  if (value.intValue !== undefined) return Number(value.intValue);
  if (value.doubleValue !== undefined) return value.doubleValue;
  return value.boolValue ?? '';
}

function attributesOf(list: OtlpAttribute[] | undefined): Record<string, string | number | boolean> {
  return Object.fromEntries((list ?? []).map((attribute) => [attribute.key, plainValue(attribute.value)]));
}

function flatten(body: any): ReceivedSpan[] {
  return (body.resourceSpans ?? []).flatMap((resourceSpans: any) =>
    (resourceSpans.scopeSpans ?? []).flatMap((scopeSpans: any) =>
      (scopeSpans.spans ?? []).map(
        (span: any): ReceivedSpan => ({
          traceId: span.traceId,
          spanId: span.spanId,
          parentSpanId: span.parentSpanId || undefined,
          name: span.name,
          kind: span.kind,
          attributes: attributesOf(span.attributes),
          links: (span.links ?? []).map((link: any) => ({ traceId: link.traceId, spanId: link.spanId })),
          statusCode: span.status?.code ?? 0,
          resource: attributesOf(resourceSpans.resource?.attributes),
        }),
      ),
    ),
  );
}

/**
 * The few fields of an OTLP ExportTraceServiceRequest (opentelemetry-proto
 * trace/v1) these tests read, decoded from the protobuf wire format into the
 * OTLP/JSON shape `flatten` reads (ids as hex). Unknown fields are skipped.
 */
function decodeExportRequest(buffer: Buffer): any {
  type Field = { number: number; value: bigint | Buffer };
  const fields = (bytes: Buffer): Field[] => {
    const out: Field[] = [];
    let at = 0;
    const varint = (): bigint => {
      let result = 0n;
      for (let shift = 0n; ; shift += 7n) {
        const byte = bytes[at++]!;
        result |= BigInt(byte & 0x7f) << shift;
        if (byte < 0x80) return result;
      }
    };
    const take = (length: number): Buffer => {
      const slice = bytes.subarray(at, at + length);
      at += length;
      return slice;
    };
    while (at < bytes.length) {
      const key = Number(varint());
      const wire = key & 7;
      const size = wire === 1 ? 8 : wire === 5 ? 4 : wire === 2 ? Number(varint()) : 0;
      out.push({ number: key >> 3, value: wire === 0 ? varint() : take(size) });
    }
    return out;
  };
  const all = (bytes: Buffer, number: number) =>
    fields(bytes)
      .filter((field) => field.number === number)
      .map((field) => field.value);
  const one = (bytes: Buffer, number: number) => all(bytes, number)[0];
  const empty = Buffer.alloc(0);
  const text = (value: unknown) => (value instanceof Buffer ? value.toString('utf8') : undefined);
  const hex = (value: unknown) => (value instanceof Buffer && value.length > 0 ? value.toString('hex') : undefined);
  const anyValue = (bytes: Buffer): OtlpValue => {
    const [field] = fields(bytes);
    if (!field) return {};
    if (field.number === 1) return { stringValue: text(field.value) };
    if (field.number === 2) return { boolValue: field.value === 1n };
    if (field.number === 3) return { intValue: Number(BigInt.asIntN(64, field.value as bigint)) };
    if (field.number === 4) return { doubleValue: (field.value as Buffer).readDoubleLE(0) };
    return {};
  };
  const keyValues = (bytes: Buffer, number: number): OtlpAttribute[] =>
    (all(bytes, number) as Buffer[]).map((kv) => ({
      key: text(one(kv, 1)) ?? '',
      value: anyValue((one(kv, 2) as Buffer | undefined) ?? empty),
    }));
  const span = (bytes: Buffer) => ({
    traceId: hex(one(bytes, 1)),
    spanId: hex(one(bytes, 2)),
    parentSpanId: hex(one(bytes, 4)),
    name: text(one(bytes, 5)),
    kind: Number(one(bytes, 6) ?? 0n),
    attributes: keyValues(bytes, 9),
    links: (all(bytes, 13) as Buffer[]).map((link) => ({ traceId: hex(one(link, 1)), spanId: hex(one(link, 2)) })),
    status: { code: Number((one((one(bytes, 15) as Buffer | undefined) ?? empty, 3) as bigint | undefined) ?? 0n) },
  });
  return {
    resourceSpans: (all(buffer, 1) as Buffer[]).map((resourceSpans) => ({
      resource: { attributes: keyValues((one(resourceSpans, 1) as Buffer | undefined) ?? empty, 1) },
      scopeSpans: (all(resourceSpans, 2) as Buffer[]).map((scopeSpans) => ({
        spans: (all(scopeSpans, 2) as Buffer[]).map(span),
      })),
    })),
  };
}
