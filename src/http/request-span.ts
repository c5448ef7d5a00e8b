/**
 * The server span of a message intake request (`POST /messages`,
 * `POST /messages/batch`). A valid W3C `traceparent` header is continued; an
 * absent or invalid one starts a new trace (W3C Trace Context: a malformed
 * header is ignored, never a reason to refuse the request). The span's own
 * context is what the message service stores with the messages, so every
 * delivery attempt continues this trace.
 */
import type { Request, RequestHandler } from 'express';
import { parseTraceparent } from '../observability/trace-context.ts';
import type { Span, Tracing } from '../observability/tracing.ts';

const spans = new WeakMap<Request, Span>();

/**
 * Wraps `handler` in a server span named `POST <route>` (`http.request.method`,
 * `http.route`, and `http.response.status_code` once the answer is written;
 * a 5xx marks it failed). The span ends when the response is finished or the
 * connection closes.
 */
export function withServerSpan(tracing: Tracing, route: string, handler: RequestHandler): RequestHandler {
  return (req, res, next) => {
    const span = tracing.startSpan(`${req.method} ${route}`, {
      kind: 'server',
      parent: parseTraceparent(req.get('traceparent')),
      attributes: { 'http.request.method': req.method, 'http.route': route },
    });
    spans.set(req, span);
    let ended = false;
    const end = () => {
      if (ended) return;
      ended = true;
      span.setAttributes({ 'http.response.status_code': res.statusCode });
      if (res.statusCode >= 500) span.fail(`HTTP ${res.statusCode}`);
      span.end();
    };
    res.once('finish', end);
    res.once('close', end);
    return handler(req, res, next);
  };
}

/** The server span `withServerSpan` started for `req`. @throws Error when the route is not wrapped (a wiring bug) */
export function serverSpanOf(req: Request): Span {
  const span = spans.get(req);
  if (!span) throw new Error('no server span for this request');
  return span;
}
