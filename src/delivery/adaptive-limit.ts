/**
 * An adaptive concurrency limit for one webhook, in the way TCP congestion
 * control and Netflix's concurrency-limits find the number of requests a
 * server takes without queueing or refusing:
 *
 * - samples are judged in rounds of `limit` completed requests (at least 10);
 * - a round with an overload signal (a timeout, 429 or 503) cuts the limit
 *   multiplicatively (x0.7), at most once a round;
 * - a round whose latency rose well above its floor (the lowest round latency
 *   seen lately: more than twice it, and by more than 20 ms) while throughput
 *   stopped growing cuts it gently (x0.9): the requests queue in the webhook
 *   rather than going faster;
 * - otherwise, when the round used the whole limit (requests waited for it),
 *   the limit grows: doubling until the first cut (slow start); after a cut
 *   for overload, halfway back to just below the limit that was refused each
 *   round (a binary search, as BIC-TCP does), then one more only every
 *   PROBE_ROUNDS rounds while within 2 of it, so a webhook with a hard cap
 *   is probed past it rarely; beyond that, or without such a cut, by one a
 *   round (additive increase).
 *
 * The limit stays within [1, ceiling]; the ceiling (WEBHOOK_CONCURRENCY) may
 * change at any time. Pure logic with an injected clock: the delivery
 * policy (policies/lanes.ts) owns the waiting and the metrics.
 */

/** One completed request: how long it took (ms) and whether the webhook said it is overloaded. */
export interface LimitSample {
  latencyMs: number;
  /** A timeout, 429 or 503: the webhook cannot take this many at once. */
  overload: boolean;
}

export interface AdaptiveLimitOptions {
  /** The highest limit (WEBHOOK_CONCURRENCY). */
  ceiling: number;
  /** Where the limit starts; default min(ceiling, 8). */
  initial?: number;
  /** Milliseconds since some fixed point; default performance.now. */
  now?: () => number;
}

/** A round's latency above this multiple of the floor counts as "well above"... */
const LATENCY_TOLERANCE = 2;
/**
 * ...when it is also this many milliseconds above it. A webhook that answers
 * in a millisecond or two (on the same host or network) shows "twice the
 * floor" from a few milliseconds of queueing in this pod's own event loop or
 * socket buffers, which says nothing about the webhook; a webhook that queues
 * requests adds its own service time per request waiting, well above this.
 */
const LATENCY_SLACK_MS = 20;
/** Throughput that grew less than this fraction over the last round counts as "stopped growing". */
const THROUGHPUT_GAIN = 0.05;
const OVERLOAD_CUT = 0.7;
/** A round is at least this many samples, so one slow request does not steer the limit. */
const MIN_ROUND_SAMPLES = 10;
const LATENCY_CUT = 0.9;
/** Saturated rounds between probes of one more request near the limit last refused. */
const PROBE_ROUNDS = 3;
/** The latency floor is the lowest round latency of this many last rounds, so a webhook that slowed down for good is re-learned. */
const FLOOR_WINDOW_ROUNDS = 1_000;

interface Round {
  started: number;
  samples: number;
  /** Samples that were not overloads; only their latency counts. */
  served: number;
  latencyTotal: number;
  overloads: number;
  /** Requests waited for the limit during this round: the limit, not the work, bounded it. */
  saturated: boolean;
}

export class AdaptiveLimit {
  #limit: number;
  #ceiling: number;
  readonly #now: () => number;
  #slowStart = true;
  #round: Round;
  #lastThroughput = 0;
  /** Latencies (ms) of the last rounds, oldest first; their minimum is the floor. */
  readonly #recentLatencies: number[] = [];
  /** The limit was cut during this round already: an overload burst counts once. */
  #cutThisRound = false;
  /** The limit in force when the webhook last refused (an overload cut), until the limit grows past it. */
  #refusedAt: number | undefined;
  /** Saturated rounds since the last probe near #refusedAt. */
  #roundsSinceProbe = 0;

  constructor(options: AdaptiveLimitOptions) {
    this.#ceiling = Math.max(1, options.ceiling);
    this.#limit = clamp(options.initial ?? Math.min(this.#ceiling, 8), 1, this.#ceiling);
    this.#now = options.now ?? (() => performance.now());
    this.#round = this.#newRound();
  }

  /** Requests that may be in flight now (an integer >= 1). */
  get limit(): number {
    return Math.floor(this.#limit);
  }

  /** A new ceiling (>= 1) applies at once; the limit is cut to it if above. */
  setCeiling(ceiling: number): void {
    this.#ceiling = Math.max(1, ceiling);
    this.#limit = Math.min(this.#limit, this.#ceiling);
  }

  /** A request had to wait for the limit: the round counts as saturated. */
  noteWaiting(): void {
    this.#round.saturated = true;
  }

  /** Records one completed request; at the end of a round, adapts the limit. */
  record(sample: LimitSample): void {
    const round = this.#round;
    round.samples += 1;
    // A refusal comes back fast: its latency says nothing of how long the webhook takes to serve.
    if (!sample.overload) {
      round.served += 1;
      round.latencyTotal += sample.latencyMs;
    }
    if (sample.overload) {
      round.overloads += 1;
      // At once, not at the round's end: requests refused in a few ms would otherwise be re-sent into the refusal.
      if (!this.#cutThisRound) {
        this.#refusedAt = this.#limit;
        this.#cut(OVERLOAD_CUT);
      }
    }
    if (round.samples >= Math.max(MIN_ROUND_SAMPLES, this.limit)) this.#endRound(round);
  }

  #endRound(round: Round): void {
    const elapsed = Math.max(1e-3, this.#now() - round.started);
    const throughput = round.served / elapsed;
    // A round with an overload was cut when the overload was recorded; it does not teach the floor either.
    if (round.overloads === 0 && round.served > 0) {
      const latency = round.latencyTotal / round.served;
      const floor = this.#updateFloor(latency);
      const wellAbove = latency > floor * LATENCY_TOLERANCE && latency - floor > LATENCY_SLACK_MS;
      if (wellAbove && throughput < this.#lastThroughput * (1 + THROUGHPUT_GAIN)) {
        this.#cut(LATENCY_CUT);
      } else if (round.saturated) {
        this.#limit = Math.min(this.#ceiling, this.#grown());
      }
    }
    this.#lastThroughput = throughput;
    this.#cutThisRound = false;
    this.#round = this.#newRound();
  }

  /** The limit after a saturated round without trouble (see the class comment). */
  #grown(): number {
    if (this.#slowStart) return this.#limit * 2;
    const refusedAt = this.#refusedAt;
    if (refusedAt === undefined) return this.#limit + 1;
    const below = refusedAt - 1;
    if (this.#limit < below) return Math.min(below, this.#limit + Math.max(1, (below - this.#limit) / 2));
    if (this.#limit < refusedAt + 2) {
      this.#roundsSinceProbe += 1;
      if (this.#roundsSinceProbe < PROBE_ROUNDS) return this.#limit;
      this.#roundsSinceProbe = 0;
      return this.#limit + 1;
    }
    this.#refusedAt = undefined;
    return this.#limit + 1;
  }

  #cut(factor: number): void {
    this.#slowStart = false;
    this.#cutThisRound = true;
    this.#limit = Math.max(1, this.#limit * factor);
  }

  /** Adds a round's latency and answers the floor (ms). */
  #updateFloor(latency: number): number {
    this.#recentLatencies.push(latency);
    if (this.#recentLatencies.length > FLOOR_WINDOW_ROUNDS) this.#recentLatencies.shift();
    return Math.min(...this.#recentLatencies);
  }

  #newRound(): Round {
    return { started: this.#now(), samples: 0, served: 0, latencyTotal: 0, overloads: 0, saturated: false };
  }
}

function clamp(value: number, low: number, high: number): number {
  return Math.min(high, Math.max(low, value));
}
