import { setTimeout as sleep } from 'node:timers/promises';
import type { FaultRecord } from './history.ts';
import type { Prng } from './prng.ts';
import type { PodSlot, Rig } from './rig.ts';

/**
 * The nemesis: a fault schedule drawn from a seed before the run starts (so
 * one seed replays the same schedule), then played against the rig. A new
 * fault (or two or three at once, one time in four) every 10–30 s; each
 * lasts 3–20 s. Two faults never hold the same target at once (a pod, the
 * database, the proxy, the webhook); faults on different targets overlap
 * freely.
 */
export type FaultKind =
  | 'pod-kill'
  | 'pod-pause'
  | 'db-restart'
  | 'db-stop'
  | 'proxy-cut'
  | 'proxy-blackhole'
  | 'proxy-refuse'
  | 'webhook-500'
  | 'webhook-503'
  | 'webhook-hang'
  | 'webhook-slow';

export interface PlannedFault {
  /** Seconds from the start of the run. */
  at: number;
  kind: FaultKind;
  /** Seconds it lasts (a killed pod is restarted after it; a restarted database comes straight back). */
  seconds: number;
  /** Pod slot index for pod faults. */
  pod?: number;
  /** Retry-After seconds (webhook-503), latency ms (webhook-slow). */
  parameter?: number;
}

const kinds: readonly FaultKind[] = [
  'pod-kill',
  'pod-pause',
  'db-restart',
  'db-stop',
  'proxy-cut',
  'proxy-blackhole',
  'proxy-refuse',
  'webhook-500',
  'webhook-503',
  'webhook-hang',
  'webhook-slow',
];

function targetOf(fault: PlannedFault): string {
  if (fault.kind.startsWith('pod-')) return `pod ${fault.pod}`;
  return fault.kind.split('-')[0]!;
}

/** The schedule of a run of `seconds` with `pods` pods; the last fault ends 10 s or more before the run does. */
export function planFaults(random: Prng, seconds: number, pods: number): PlannedFault[] {
  const plan: PlannedFault[] = [];
  const busyUntil = new Map<string, number>();
  for (let at = random.int(5, 15); at < seconds - 15; at += random.int(10, 30)) {
    const count = random.chance(0.25) ? random.int(2, 3) : 1;
    for (let index = 0; index < count; index += 1) {
      const fault: PlannedFault = {
        at,
        kind: random.pick(kinds),
        seconds: Math.min(random.int(3, 20), seconds - 10 - at),
        pod: random.int(0, pods - 1),
      };
      if (fault.kind === 'webhook-503') fault.parameter = random.int(1, 5);
      if (fault.kind === 'webhook-slow') fault.parameter = random.int(500, 2_500);
      if (fault.kind === 'db-restart' || fault.kind === 'proxy-cut') fault.seconds = Math.min(fault.seconds, 3);
      const target = targetOf(fault);
      if ((busyUntil.get(target) ?? 0) > at || fault.seconds < 1) continue;
      busyUntil.set(target, at + fault.seconds + 1);
      if (!fault.kind.startsWith('pod-')) delete fault.pod;
      plan.push(fault);
    }
  }
  return plan;
}

/** One line per planned fault, for the run's log. */
export function describePlan(plan: readonly PlannedFault[]): string {
  return plan
    .map((f) => {
      const extra = f.parameter === undefined ? '' : ` (${f.parameter})`;
      const pod = f.pod === undefined ? '' : ` p${f.pod + 1}`;
      return `  t+${String(f.at).padStart(4)} s  ${f.kind}${pod}${extra} for ${f.seconds} s`;
    })
    .join('\n');
}

/**
 * Plays `plan` against `rig` from `startedAt` (epoch ms), each fault recorded
 * in the rig's history from injection to healing. Resolves when the last
 * fault has been healed. `stopped()` ends it early (every fault still healed).
 */
export async function playFaults(
  rig: Rig,
  plan: readonly PlannedFault[],
  startedAt: number,
  stopped: () => boolean,
): Promise<void> {
  const running: Promise<void>[] = [];
  for (const fault of plan) {
    const wait = startedAt + fault.at * 1000 - Date.now();
    if (wait > 0) await sleep(wait);
    if (stopped()) break;
    running.push(inject(rig, fault));
  }
  await Promise.all(running);
}

async function inject(rig: Rig, fault: PlannedFault): Promise<void> {
  const slot = fault.pod === undefined ? undefined : rig.slots[fault.pod];
  const target = slot ? (slot.pod?.name ?? slot.name) : fault.kind.split('-')[0]!;
  const record = rig.history.faultBegins(fault.kind, target);
  try {
    await apply(rig, fault, slot, record);
  } catch (error) {
    console.log(`nemesis: ${fault.kind} on ${target} failed: ${String(error)}`);
  } finally {
    record.end = Date.now();
  }
}

async function apply(rig: Rig, fault: PlannedFault, slot: PodSlot | undefined, record: FaultRecord): Promise<void> {
  const ms = fault.seconds * 1000;
  switch (fault.kind) {
    case 'pod-kill':
      await slot!.starting;
      await rig.kill(slot!);
      await sleep(ms);
      record.end = Date.now(); // healed once the restart begins; a start that fails is in history.failedStarts
      await rig.start(slot!);
      return;
    case 'pod-pause':
      await slot!.starting;
      rig.freeze(slot!, true);
      await sleep(ms);
      rig.freeze(slot!, false);
      return;
    case 'db-restart':
      await rig.stopDatabase();
      await rig.startDatabase();
      return;
    case 'db-stop':
      await rig.stopDatabase();
      await sleep(ms);
      await rig.startDatabase();
      return;
    default:
      if (fault.kind.startsWith('proxy-')) return proxyFault(rig, fault.kind, ms);
      return webhookFault(rig, fault, ms);
  }
}

/** cut: every connection reset (and new ones for the fault's seconds); black-hole: bytes dropped; refuse: proxy disabled. */
async function proxyFault(rig: Rig, kind: FaultKind, ms: number): Promise<void> {
  if (kind === 'proxy-refuse') {
    await rig.proxyEnabled(false);
    await sleep(ms);
    await rig.proxyEnabled(true);
    return;
  }
  const toxic =
    kind === 'proxy-cut'
      ? { type: 'reset_peer' as const, attributes: { timeout: 0 } }
      : { type: 'timeout' as const, attributes: { timeout: 0 } };
  const added = [];
  for (const stream of ['upstream', 'downstream'] as const) {
    added.push(await rig.proxy.addToxic<unknown>({ name: `${kind}-${stream}`, stream, toxicity: 1, ...toxic }));
  }
  await sleep(ms);
  for (const toxic of added) await toxic.remove();
}

async function webhookFault(rig: Rig, fault: PlannedFault, ms: number): Promise<void> {
  const { receiver } = rig;
  if (fault.kind === 'webhook-slow') receiver.latencyMs = fault.parameter ?? 1_000;
  else if (fault.kind === 'webhook-hang') receiver.policy = () => ({ kind: 'hang' });
  else if (fault.kind === 'webhook-500') receiver.policy = () => ({ kind: 'status', status: 500 });
  else {
    const retryAfter = String(fault.parameter ?? 2);
    receiver.policy = () => ({ kind: 'status', status: 503, headers: { 'retry-after': retryAfter } });
  }
  await sleep(ms);
  receiver.policy = () => ({ kind: 'accept' });
  receiver.latencyMs = 0;
}
