/**
 * The one seam through which delivery policies plug into the loop
 * (claim -> send -> settle, see loop.ts). The loop knows no policy by name: it
 * asks every policy of the run, in list order, at four points of each chunk:
 *
 * - before the claim: how many messages may be claimed now (a policy may wait
 *   first, or answer 0 to end the run);
 * - before each send: may this message go now (a policy may wait, e.g. for a
 *   free lane; `false` hands the message back untried);
 * - after each attempt: here is the result (a policy may void the attempt or
 *   hand the message back without counting it);
 * - at the end of the chunk, whatever happened on the way: release what the
 *   chunk held.
 *
 * A new policy (attempt history, adaptive concurrency, per-destination
 * limits...) is a new module under policies/ and one more entry in the list
 * the delivery component runs with (delivery.ts), not a branch in the loop.
 */
import type { Metrics } from '../observability/metrics.ts';
import type { ClaimedMessage } from './claim.ts';
import type { RunSettings } from './run-settings.ts';
import type { DeliveryResult } from './webhook.ts';

/** What a policy knows of the run it serves. */
export interface RunScope {
  /** Aborted when the run must claim nothing more (job stopped, run lease lost, shutdown begun). */
  signal: AbortSignal;
  /** The shutdown deadline: webhook requests in flight are aborted and their messages handed back. */
  deadline: AbortSignal;
  settings: RunSettings;
  metrics: Metrics;
  /** Chunk pipelines the run works with at once (loop.ts), each with its own policy state: 1 or 2. */
  pipelines: number;
}

/** What a policy makes of a counted attempt: hand the message back (attempt not counted), or nothing. */
export type AttemptVerdict = 'hand-back' | undefined;

/** Every hook is optional; a hook that may wait returns a promise. */
export interface DeliveryPolicy {
  /** Before each claim: how many of `wanted` (>= 1) may be claimed now; 0 ends the run. */
  beforeClaim?(wanted: number): number | Promise<number>;
  /** After a claim that found `claimed` (>= 1) messages. */
  afterClaim?(claimed: number): void;
  /** Just before `message` is sent: `false` hands it back untried. */
  beforeSend?(message: ClaimedMessage): boolean | Promise<boolean>;
  /** After the attempt of a message this policy let through (or a later policy refused): free what it held. */
  afterSend?(): void;
  /**
   * True when the attempt did not really happen (aborted at the shutdown
   * deadline): the message is handed back and nothing is recorded of the
   * attempt (no metric, no other policy told). Asked of every policy first.
   */
  voidsAttempt?(result: DeliveryResult): boolean;
  /** After a counted attempt of `message`, with its result. */
  afterAttempt?(result: DeliveryResult, message: ClaimedMessage): AttemptVerdict | Promise<AttemptVerdict>;
  /** At the end of every chunk, also one that claimed nothing or threw. */
  endChunk?(): void;
}

/** Makes the policy's state for one run; called once at the start of each run. */
export type DeliveryPolicyFactory = (scope: RunScope) => DeliveryPolicy;
