/**
 * Trace context in delivery: where a message's delivery attempts continue
 * their trace, and the spans of the loop (the claim, each attempt).
 *
 * - A message stores the `traceparent` of its intake request's span
 *   (messages.trace_parent); each attempt is a client span whose parent is
 *   that span (same trace id, a new span id every attempt), linked to the
 *   claim that took the message; its context is the `traceparent` the webhook
 *   receives.
 * - The claim is a span of the run's own trace (its parent the run span),
 *   linked to every message it claimed.
 * - A message stored before trace_parent existed has none: its attempts use
 *   the message id's 32 hex digits as trace id (a UUID is 16 bytes, as a trace
 *   id is), so they still share one trace.
 */
import { parseTraceparent, type TraceContext } from '../observability/trace-context.ts';
import type { Span, Tracing } from '../observability/tracing.ts';
import type { ClaimedMessage } from './claim.ts';
import type { DeliveryResult } from './webhook.ts';

/** The context the message's attempts continue: its stored traceparent, or one derived from its id. */
export function messageTraceContext(message: Pick<ClaimedMessage, 'id' | 'traceParent'>): TraceContext {
  const stored = parseTraceparent(message.traceParent ?? undefined);
  if (stored) return stored;
  const hex = message.id.replaceAll('-', '').toLowerCase();
  return { traceId: hex, spanId: hex.slice(16), sampled: true };
}

/** The span of one claim, child of the run's span; links to the claimed messages are added by `claimed`. */
export function startClaimSpan(tracing: Tracing, run: TraceContext | undefined, wanted: number): Span {
  return tracing.startSpan('claim messages', {
    parent: run,
    attributes: { 'job_manager.claim.wanted': wanted },
  });
}

/** Ends the claim span with what it took; the links to the messages only when spans are exported. */
export function claimed(tracing: Tracing, span: Span, messages: ClaimedMessage[]): void {
  if (tracing.exporting) {
    span.setAttributes({ 'messaging.batch.message_count': messages.length });
    span.addLinks(messages.map(messageTraceContext));
  }
  span.end();
}

/** The client span of one webhook attempt of `message`, continuing its trace, linked to `claim`. */
export function startAttemptSpan(tracing: Tracing, message: ClaimedMessage, claim: TraceContext): Span {
  return tracing.startSpan('POST webhook', {
    kind: 'client',
    parent: messageTraceContext(message),
    links: [claim],
    attributes: {
      'messaging.message.id': message.id,
      'job_manager.message.id': message.id,
      'job_manager.attempt': message.attempts,
      'http.request.method': 'POST',
    },
  });
}

/** Records the attempt's result on its span and ends it; `voided`: aborted at shutdown, not counted. */
export function endAttemptSpan(span: Span, result: DeliveryResult, voided: boolean): void {
  if (result.httpStatus !== undefined && result.httpStatus !== 0)
    span.setAttributes({ 'http.response.status_code': result.httpStatus });
  span.setAttributes({ 'job_manager.delivery.outcome': voided ? 'aborted' : result.outcome });
  if (result.outcome !== 'sent') {
    span.setAttributes({ 'error.type': result.httpStatus ? String(result.httpStatus) : result.outcome });
    span.fail(result.error);
  }
  span.end();
}
