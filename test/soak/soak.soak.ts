import { writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { expect } from 'chai';
import { connectionBudget } from '../../src/db/database.ts';
import { http, waitHealthy } from '../faults/support/kit.ts';
import { check, type Observed } from './checker.ts';
import { History } from './history.ts';
import { describePlan, planFaults, playFaults } from './nemesis.ts';
import { Prng } from './prng.ts';
import { Rig } from './rig.ts';
import { podSettings, replayCommand, soakSettings } from './settings.ts';
import { Workload } from './workload.ts';

/**
 * The randomized fault soak (`npm run test:soak`; docs/soak.md): real pods
 * behind Toxiproxy in front of a throwaway PostgreSQL, a webhook the harness
 * controls, a steady workload, a seeded nemesis; then healing, a quiet
 * period, and the checker over the whole history. On failure it prints the
 * seed and the command that replays the run.
 */
describe('soak: seeded random faults against a steady workload', function () {
  const settings = soakSettings();
  this.timeout((settings.seconds + 900) * 1000);
  const history = new History();
  let rig: Rig | undefined;

  after(async function () {
    this.timeout(120_000);
    await rig?.tearDown();
  });

  it(`seed ${settings.seed}, ${settings.seconds} s, ${settings.pods} pods: nothing lost, every resend explained, nothing stuck, healthy after`, async () => {
    const random = new Prng(settings.seed);
    const plan = planFaults(random.fork(), settings.seconds, settings.pods);
    console.log(`soak: ${replayCommand(settings)}\nfault schedule:\n${describePlan(plan)}`);
    rig = await Rig.build(settings.pods, history);
    await createSenders(rig);
    const sampling = sampleJob(rig, history);
    const workload = new Workload(rig, history, random.fork(), settings.rate, settings.seed);
    const startedAt = Date.now();
    let over = false;
    const working = workload.run();
    const faulting = playFaults(rig, plan, startedAt, () => over);
    await sleep(settings.seconds * 1000);
    over = true;
    workload.stop();
    await Promise.all([working, faulting]);
    await rig.heal();
    history.healedAt = Date.now();
    await quietPeriod(rig);
    const observed = await observe(rig);
    sampling.stop();
    const verdict = check(history, observed);
    const file = join(tmpdir(), `soak-${settings.seed}-${Date.now()}.json`);
    writeFileSync(file, JSON.stringify({ settings, plan, history, observed, verdict }));
    console.log(`\nsoak summary (seed ${settings.seed}):\n  ${verdict.summary.join('\n  ')}\n  history: ${file}`);
    if (verdict.violations.length > 0) {
      for (const slot of rig.slots) console.log(`--- ${slot.pod?.name} (last lines)\n${slot.pod?.tail(30)}`);
      console.log(`\nsoak FAILED, seed ${settings.seed}; replay with:\n  ${replayCommand(settings)}`);
    }
    expect(verdict.violations, `violations (replay: ${replayCommand(settings)})`).to.deep.equal([]);
  });
});

/** Two send-messages jobs every second, batch 100: `soak-sender-a` is the job whose cadence is checked. */
async function createSenders(rig: Rig): Promise<void> {
  const pod = rig.livePods()[0]!;
  for (const name of ['soak-sender-a', 'soak-sender-b']) {
    const answer = await http(pod.url, 'POST', '/jobs', {
      name,
      handler: 'send-messages',
      intervalSeconds: 1,
      batchSize: 100,
      active: true,
    });
    expect(answer.status, JSON.stringify(answer.body)).to.equal(201);
  }
}

/** Samples soak-sender-a's runCount every second (from whichever pod answers). */
function sampleJob(rig: Rig, history: History): { stop(): void } {
  let stopped = false;
  void (async () => {
    while (!stopped) {
      const job = await rig.get('/jobs/soak-sender-a');
      if (typeof job?.runCount === 'number') history.jobSamples.push({ at: Date.now(), runCount: job.runCount });
      await sleep(1_000);
    }
  })();
  return {
    stop() {
      stopped = true;
    },
  };
}

/**
 * After healing: failed messages retried (a webhook fault may have used up
 * their attempts), then wait until nothing is pending or sending (4 min at
 * most), then 10 s more, and at least 45 s from healing in all: the checker
 * needs one calm window (no fault from 20 s before) to see the job's cadence.
 */
async function quietPeriod(rig: Rig): Promise<void> {
  const healedAt = Date.now();
  const deadline = healedAt + 240_000;
  for (;;) {
    const pod = rig.livePods()[0];
    if (pod) await http(pod.url, 'POST', '/messages/retry-failed', {}, 10_000);
    const [row] = await rig.cluster
      .query<{ open: number; failed: number }>(
        "SELECT count(*) FILTER (WHERE status IN ('pending', 'sending'))::int AS open, count(*) FILTER (WHERE status = 'failed')::int AS failed FROM messages",
        [],
        'soak',
      )
      .catch(() => [{ open: -1, failed: -1 }]);
    if (row && row.open === 0 && row.failed === 0) break;
    if (Date.now() > deadline) break;
    await sleep(2_000);
  }
  await sleep(Math.max(10_000, healedAt + 45_000 - Date.now()));
}

async function observe(rig: Rig): Promise<Observed> {
  const rows = await rig.cluster.query<{ id: string; content: string; status: string }>(
    'SELECT id, content, status FROM messages',
    [],
    'soak',
  );
  const health: Record<string, number> = {};
  for (const slot of rig.slots)
    health[slot.pod?.name ?? slot.name] = slot.pod?.alive ? await waitHealthy(slot.pod, 30_000) : 0;
  const shutdownLimitSeconds = Number(podSettings.SHUTDOWN_TIMEOUT_MS) / 1000 + 2;
  const shutdowns: Observed['shutdowns'] = {};
  await Promise.all(
    rig.slots.map(async (slot) => {
      if (!slot.pod?.alive) return;
      const sentAt = Date.now();
      const exit = await slot.pod.stop('SIGTERM', 35_000);
      shutdowns[slot.pod.name] = { seconds: (exit.at - sentAt) / 1000, code: exit.code };
    }),
  );
  return {
    rows,
    deliveries: rig.receiver.deliveries,
    health,
    backendPeaks: rig.sampler.allPeaks(),
    budget: connectionBudget(10),
    shutdowns,
    shutdownLimitSeconds,
    leaseMs: Number(podSettings.MESSAGE_LEASE_SECONDS) * 1000,
    webhookTimeoutMs: Number(podSettings.WEBHOOK_TIMEOUT_MS),
    contentPrefix: `soak ${soakSettings().seed} #`,
  };
}
