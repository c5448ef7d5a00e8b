import type { Delivery } from '../faults/support/receiver.ts';
import type { FaultRecord, History } from './history.ts';

/** What the checker reads besides the history: the final database, the webhook's record, the pods at the end. */
export interface Observed {
  /** Every message row at the end (after healing and the quiet period). */
  rows: Array<{ id: string; content: string; status: string }>;
  /** Every request that reached the webhook, with its answer. */
  deliveries: readonly Delivery[];
  /** Each pod's /health-check status at the end (0: no answer or not running). */
  health: Record<string, number>;
  /** The most backends each pod incarnation held at once, sampled every 250 ms throughout. */
  backendPeaks: Array<{ instance: string; peak: number; at: number }>;
  budget: number;
  /** Seconds each pod took to exit after the final SIGTERM, and its exit code. */
  shutdowns: Record<string, { seconds: number; code: number | null }>;
  shutdownLimitSeconds: number;
  /** MESSAGE_LEASE_SECONDS and WEBHOOK_TIMEOUT_MS of the pods. */
  leaseMs: number;
  webhookTimeoutMs: number;
  /** The content prefix of this run's messages. */
  contentPrefix: string;
}

export interface Verdict {
  violations: string[];
  summary: string[];
}

/**
 * The checker: reads the whole history after healing and a quiet period and
 * lists every violation of the soak's promises (each a line naming the
 * message, request or pod): every accepted message (answered 201, or found in
 * the database after an unknown outcome) delivered at least once or
 * cancelled by a cancel answered 200; a resend only with a message's own
 * key and within reach of a fault (the first delivery's lease overlaps a
 * fault); nothing left `sending` or `pending`; replays answered with the same
 * ids; the cadence job running in calm windows; every pod healthy, no 5xx
 * other than 503, every pod within its connection budget, every pod exiting
 * in time on SIGTERM. Also returns a short summary.
 */
export function check(history: History, observed: Observed): Verdict {
  const violations: string[] = [];
  const summary: string[] = [];
  const accepted = acceptedMessages(history, observed, violations);
  const acceptedCounts = countAccepts(observed.deliveries);
  checkDelivered(history, observed, accepted, acceptedCounts, violations);
  const explained = checkResends(history, observed, acceptedCounts, violations);
  checkReplays(history, violations);
  const calm = checkCadence(history, violations);
  checkPods(history, observed, violations);
  const faults = countBy(history.faults.map((fault) => fault.kind));
  const maybes = history.intakes.filter((intake) => intake.outcome === 'maybe').length;
  summary.push(
    `faults injected: ${history.faults.length} (${Object.entries(faults)
      .map(([kind, n]) => `${kind} ${n}`)
      .join(', ')})`,
    `messages accepted: ${accepted.size} (intake requests ${history.intakes.length}, of them replays ` +
      `${history.intakes.filter((i) => i.replayOf !== undefined).length}, unknown outcome ${maybes}); ` +
      `delivered ${[...accepted].filter((id) => (acceptedCounts.get(id)?.length ?? 0) > 0).length}, ` +
      `cancelled ${observed.rows.filter((row) => row.status === 'cancelled').length}`,
    `duplicates: ${explained.total} resends, explained by ${JSON.stringify(explained.byKind)}`,
    `cadence: ${calm.windows} calm windows of 10 s or more (${calm.seconds.toFixed(0)} s in all), the 1 s job ran ${calm.runs} times in them`,
    `connections: peak per pod ${Math.max(0, ...observed.backendPeaks.map((p) => p.peak))} of a budget of ${observed.budget}`,
    `pod starts that failed (during faults): ${history.failedStarts.length}; 503 answers: ${
      history.intakes.filter((i) => i.status === 503).length + history.actions.filter((a) => a.status === 503).length
    }`,
  );
  return { violations, summary };
}

/** Ids the service accepted: answered 201, or stored after a request whose answer was lost or not a 201. */
function acceptedMessages(history: History, observed: Observed, violations: string[]): Set<string> {
  const stored = new Map<string, string>();
  for (const row of observed.rows) {
    if (!row.content.startsWith(observed.contentPrefix)) continue;
    if (stored.has(row.content))
      violations.push(`intake stored "${row.content}" twice (${stored.get(row.content)}, ${row.id})`);
    stored.set(row.content, row.id);
  }
  const accepted = new Set(stored.values());
  for (const intake of history.intakes) {
    intake.ids.forEach((id, index) => {
      accepted.add(id);
      const content = intake.contents[index]!;
      if (stored.get(content) !== id)
        violations.push(
          `lost: ${id} ("${content}") answered ${intake.status} at ${iso(intake.end)} is not in the database`,
        );
    });
  }
  return accepted;
}

function countAccepts(deliveries: readonly Delivery[]): Map<string, number[]> {
  const accepts = new Map<string, number[]>();
  for (const delivery of deliveries) {
    if (delivery.status !== 202) continue;
    const times = accepts.get(delivery.key) ?? [];
    times.push(delivery.at);
    accepts.set(delivery.key, times);
  }
  return accepts;
}

function checkDelivered(
  history: History,
  observed: Observed,
  accepted: Set<string>,
  acceptedCounts: Map<string, number[]>,
  violations: string[],
): void {
  const status = new Map(observed.rows.map((row) => [row.id, row.status]));
  // A cancel answered 200, or one whose answer never came ("maybe": it may have taken effect, as a 30 min run showed).
  const cancelledOk = new Set(
    history.actions
      .filter((a) => a.kind === 'cancel' && (a.status === 200 || a.outcome === 'maybe'))
      .map((a) => a.target),
  );
  const stuck = observed.rows.filter((row) => row.status === 'sending' || row.status === 'pending');
  for (const row of stuck.slice(0, 20)) violations.push(`stuck: ${row.id} is still ${row.status}`);
  if (stuck.length > 20) violations.push(`stuck: ${stuck.length - 20} more`);
  for (const id of accepted) {
    if ((acceptedCounts.get(id)?.length ?? 0) > 0) continue;
    if (status.get(id) === 'cancelled' && cancelledOk.has(id)) continue;
    violations.push(
      `not delivered: ${id} (status ${status.get(id) ?? 'missing'}${cancelledOk.has(id) ? ', cancel answered 200' : ''})`,
    );
  }
  for (const key of acceptedCounts.keys())
    if (!accepted.has(key)) violations.push(`the webhook accepted key ${key}, which is no message of this run`);
  checkCancelsHold(history, acceptedCounts, violations);
}

/** A message whose cancel was answered 200 is not delivered afterwards unless a retry of it came in between. */
function checkCancelsHold(history: History, acceptedCounts: Map<string, number[]>, violations: string[]): void {
  for (const cancel of history.actions) {
    if (cancel.kind !== 'cancel' || cancel.status !== 200) continue;
    const later = (acceptedCounts.get(cancel.target) ?? []).find((at) => at > cancel.end);
    if (later === undefined) continue;
    const retried = history.actions.some(
      (a) => a.kind === 'retry' && a.target === cancel.target && a.outcome !== 'fail' && a.at < later,
    );
    if (!retried)
      violations.push(
        `cancelled but sent: ${cancel.target} (cancel answered 200 at ${iso(cancel.end)}, accepted ${iso(later)})`,
      );
  }
}

/** Every second (or later) acceptance of a key must come within a fault's reach of the one before. */
function checkResends(
  history: History,
  observed: Observed,
  acceptedCounts: Map<string, number[]>,
  violations: string[],
): { total: number; byKind: Record<string, number> } {
  const byKind: Record<string, number> = {};
  let total = 0;
  for (const [key, times] of acceptedCounts) {
    for (let index = 1; index < times.length; index += 1) {
      total += 1;
      const first = times[index - 1]!;
      // The first delivery was claimed at most a webhook timeout before it; its lease ran from the claim.
      const fault: FaultRecord | undefined = history.faultDuring(
        first - observed.webhookTimeoutMs,
        first + observed.leaseMs,
      );
      if (fault) byKind[fault.kind] = (byKind[fault.kind] ?? 0) + 1;
      else
        violations.push(
          `resend of ${key} at ${iso(times[index]!)} (first accepted ${iso(first)}) with no fault within its lease`,
        );
    }
  }
  return { total, byKind };
}

/** A replay answered 201 carries the same ids as the original (or as every other replay when the original's answer was lost). */
function checkReplays(history: History, violations: string[]): void {
  const answers = new Map<number, string>();
  history.intakes.forEach((intake, index) => {
    if (intake.replayOf === undefined && intake.outcome === 'ok') answers.set(index, intake.ids.join(','));
  });
  for (const intake of history.intakes) {
    if (intake.replayOf === undefined || intake.outcome !== 'ok') continue;
    const ids = intake.ids.join(',');
    const expected = answers.get(intake.replayOf);
    if (expected === undefined) answers.set(intake.replayOf, ids);
    else if (expected !== ids)
      violations.push(`replay of key ${intake.key} at ${iso(intake.at)} answered ${ids}, the original ${expected}`);
  }
}

/**
 * The cadence job (every 1 s) in calm windows: no fault active from 5 s
 * before to 20 s after, at least 10 s long; it must run at least once per 5 s.
 */
function checkCadence(history: History, violations: string[]): { windows: number; seconds: number; runs: number } {
  const totals = { windows: 0, seconds: 0, runs: 0 };
  const samples = history.jobSamples;
  let windowStart: (typeof samples)[number] | undefined;
  let last: (typeof samples)[number] | undefined;
  const close = () => {
    const seconds = windowStart && last ? (last.at - windowStart.at) / 1000 : 0;
    if (seconds >= 10) {
      totals.windows += 1;
      totals.seconds += seconds;
      totals.runs += last!.runCount - windowStart!.runCount;
    }
    windowStart = undefined;
  };
  for (const sample of samples) {
    if (history.faultDuring(sample.at - 20_000, sample.at + 5_000)) {
      close();
      continue;
    }
    windowStart ??= sample;
    last = sample;
    const seconds = (sample.at - windowStart.at) / 1000;
    if (seconds >= 10 && sample.runCount - windowStart.runCount < Math.floor(seconds / 5)) {
      violations.push(
        `cadence: the 1 s job ran ${sample.runCount - windowStart.runCount} times in a calm ${seconds.toFixed(0)} s from ${iso(windowStart.at)}`,
      );
      close();
    }
  }
  close();
  if (totals.windows === 0) violations.push('cadence: no calm window of 10 s or more was sampled');
  return totals;
}

function checkPods(history: History, observed: Observed, violations: string[]): void {
  for (const [pod, status] of Object.entries(observed.health))
    if (status !== 200) violations.push(`pod ${pod}: /health-check ${status} after healing`);
  for (const error of history.serverErrors.slice(0, 20))
    violations.push(`${error.status} from ${error.pod} on ${error.request} at ${iso(error.at)}: ${error.body}`);
  for (const peak of observed.backendPeaks)
    if (/^p\d+-\d+$/.test(peak.instance) && peak.peak > observed.budget)
      violations.push(
        `pod ${peak.instance}: ${peak.peak} backends at ${iso(peak.at)}, over its budget of ${observed.budget}`,
      );
  for (const start of history.failedStarts.filter((s) => s.at > history.healedAt && history.healedAt > 0))
    violations.push(`pod ${start.pod} failed to start after healing: ${start.tail.slice(-300)}`);
  for (const [pod, exit] of Object.entries(observed.shutdowns))
    if (exit.seconds > observed.shutdownLimitSeconds)
      violations.push(
        `pod ${pod}: exited ${exit.seconds.toFixed(1)} s after SIGTERM (limit ${observed.shutdownLimitSeconds} s)`,
      );
}

function countBy(values: string[]): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const value of values) counts[value] = (counts[value] ?? 0) + 1;
  return counts;
}

function iso(ms: number): string {
  return new Date(ms).toISOString().slice(11, 23);
}
