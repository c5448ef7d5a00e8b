import { expect } from 'chai';
import { AdaptiveLimit } from '../../src/delivery/adaptive-limit.ts';
import { ConcurrencyGate } from '../../src/delivery/policies/lanes.ts';

/**
 * A webhook simulated in virtual time: `capacity` requests are served at
 * once in `serviceMs` each; beyond that it answers 503 at once (`refuse`) or
 * queues them (`queue`). The client keeps as many requests in flight as the
 * limit allows, with always more work waiting.
 */
function simulate(options: {
  capacity: number;
  serviceMs: number;
  mode: 'refuse' | 'queue';
  ceiling: number;
  seconds: number;
}) {
  let now = 0;
  const limit = new AdaptiveLimit({ ceiling: options.ceiling, now: () => now });
  /** Completion times of requests in flight, with their start and whether they were refused. */
  let inFlight: Array<{ done: number; started: number; refused: boolean }> = [];
  let serving: number[] = []; // completion times of requests the webhook is serving
  const trace: Array<{ t: number; limit: number; refused: boolean }> = [];
  while (now < options.seconds * 1000) {
    while (inFlight.length < limit.limit) {
      serving = serving.filter((done) => done > now);
      if (options.mode === 'refuse' && serving.length >= options.capacity) {
        inFlight.push({ done: now + 0.5, started: now, refused: true });
      } else {
        const sorted = [...serving].sort((a, b) => a - b);
        const start = sorted.length < options.capacity ? now : (sorted[sorted.length - options.capacity] ?? now);
        const done = Math.max(now, start) + options.serviceMs;
        serving.push(done);
        inFlight.push({ done, started: now, refused: false });
      }
    }
    limit.noteWaiting();
    inFlight.sort((a, b) => a.done - b.done);
    const next = inFlight.shift();
    if (!next) break;
    now = next.done;
    limit.record({ latencyMs: next.done - next.started, overload: next.refused });
    trace.push({ t: now, limit: limit.limit, refused: next.refused });
    inFlight = inFlight.filter((request) => request.done >= now);
  }
  return { trace, limit };
}

describe('adaptive concurrency limit', () => {
  it('settles at the capacity of a webhook that refuses beyond 20 at once, with few refusals after warm-up', () => {
    const { trace } = simulate({ capacity: 20, serviceMs: 50, mode: 'refuse', ceiling: 256, seconds: 60 });
    const settled = trace.filter((sample) => sample.t > 5_000);
    const refusedShare = settled.filter((sample) => sample.refused).length / settled.length;
    const served = settled.filter((sample) => !sample.refused).length / 55;
    expect(refusedShare).to.be.below(0.01);
    expect(served).to.be.at.least(0.9 * 400);
    expect(Math.max(...settled.map((sample) => sample.limit))).to.be.at.most(21);
  });

  it('backs off from a webhook that queues beyond 20 at once instead of filling its queue', () => {
    const { trace } = simulate({ capacity: 20, serviceMs: 50, mode: 'queue', ceiling: 256, seconds: 60 });
    const settled = trace.filter((sample) => sample.t > 10_000).map((sample) => sample.limit);
    expect(Math.max(...settled)).to.be.below(60);
    expect(Math.min(...settled)).to.be.at.least(10);
  });

  it('grows to the ceiling while the webhook keeps up', () => {
    const { limit } = simulate({ capacity: 1_000, serviceMs: 20, mode: 'queue', ceiling: 64, seconds: 10 });
    expect(limit.limit).to.equal(64);
  });

  it('reaches a ceiling of 50 within a few hundred requests to a fast webhook whose latency grows a few ms with queueing', () => {
    // 5 served at once in 1 ms each (5,000/s): 50 in flight wait up to 10 ms, and nothing is refused.
    const { trace, limit } = simulate({ capacity: 5, serviceMs: 1, mode: 'queue', ceiling: 50, seconds: 2 });
    const firstAtCeiling = trace.findIndex((sample) => sample.limit === 50);
    expect(firstAtCeiling).to.be.within(0, 300);
    expect(Math.min(...trace.slice(firstAtCeiling).map((sample) => sample.limit))).to.be.at.least(45);
    expect(limit.limit).to.equal(50);
  });

  it('never grows without requests waiting for it', () => {
    let now = 0;
    const limit = new AdaptiveLimit({ ceiling: 100, initial: 4, now: () => now });
    for (let i = 0; i < 1_000; i += 1) {
      now += 5;
      limit.record({ latencyMs: 5, overload: false });
    }
    expect(limit.limit).to.equal(4);
  });

  it('cuts the limit by 30% on an overload and never below 1', () => {
    let now = 0;
    const limit = new AdaptiveLimit({ ceiling: 100, initial: 40, now: () => now });
    for (let i = 0; i < 40; i += 1) limit.record({ latencyMs: 5, overload: i === 3 });
    expect(limit.limit).to.equal(28);
    for (let round = 0; round < 30; round += 1) {
      for (let i = 0; i < 10; i += 1) {
        now += 1;
        limit.record({ latencyMs: 5, overload: true });
      }
    }
    expect(limit.limit).to.equal(1);
  });

  it('after a refusal, climbs halfway back to just below the refused limit each round, then probes past it every 3 rounds', () => {
    let now = 0;
    const limit = new AdaptiveLimit({ ceiling: 100, initial: 20, now: () => now });
    limit.noteWaiting();
    limit.record({ latencyMs: 1, overload: true }); // refused at 20: cut to 14 at once
    const afterRound = () => {
      const samples = Math.max(10, limit.limit);
      limit.noteWaiting();
      for (let i = 0; i < samples; i += 1) {
        now += 5;
        limit.record({ latencyMs: 50, overload: false });
      }
      return limit.limit;
    };
    for (let i = 1; i < 14; i += 1) limit.record({ latencyMs: 50, overload: false }); // the rest of the refused round
    expect(limit.limit).to.equal(14);
    const limits = Array.from({ length: 15 }, afterRound);
    // 14 -> 16.5 -> 17.75 -> 18.9 -> 19 (one below 20), then one more every 3 rounds up to 22, then by one a round.
    expect(limits).to.deep.equal([16, 17, 18, 19, 19, 19, 20, 20, 20, 21, 21, 21, 22, 23, 24]);
  });

  it('takes a lower ceiling at once', () => {
    const limit = new AdaptiveLimit({ ceiling: 100, initial: 50 });
    limit.setCeiling(10);
    expect(limit.limit).to.equal(10);
  });
});

describe('concurrency gate', () => {
  it('lets `limit` requests through at once and the next waiter in order as each slot frees', async () => {
    const gate = new ConcurrencyGate({ ceiling: 2, adaptive: false });
    expect(gate.acquire()).to.equal(true);
    expect(gate.acquire()).to.equal(true);
    const order: string[] = [];
    const third = Promise.resolve(gate.acquire()).then(() => order.push('third'));
    const fourth = Promise.resolve(gate.acquire()).then(() => order.push('fourth'));
    await Promise.resolve();
    expect(order).to.deep.equal([]);
    gate.release();
    await third;
    expect(order).to.deep.equal(['third']);
    gate.release();
    await fourth;
    expect(order).to.deep.equal(['third', 'fourth']);
  });

  it('reports its limit on every change: adaptive from 8, fixed at the ceiling, a lower ceiling at once', () => {
    const seen: number[] = [];
    const gate = new ConcurrencyGate({ ceiling: 64, adaptive: true, onLimit: (limit) => seen.push(limit) });
    expect(gate.limit).to.equal(8);
    gate.reconfigure(5, true);
    gate.reconfigure(30, false);
    expect(seen).to.deep.equal([8, 5, 30]);
  });

  it('shrinks on 503s and timeouts but not on other failures', () => {
    const gate = new ConcurrencyGate({ ceiling: 64, adaptive: true });
    gate.record({ outcome: 'transient', error: 'HTTP 500', httpStatus: 500 }, 5);
    gate.record({ outcome: 'permanent', error: 'HTTP 400', httpStatus: 400 }, 5);
    gate.record({ outcome: 'transient', error: 'connection refused' }, 5);
    expect(gate.limit).to.equal(8);
    gate.record({ outcome: 'transient', error: 'HTTP 503', httpStatus: 503 }, 5);
    expect(gate.limit).to.equal(5);
    const other = new ConcurrencyGate({ ceiling: 64, adaptive: true });
    other.record({ outcome: 'transient', error: 'timeout after 5000 ms' }, 5_000);
    expect(other.limit).to.equal(5);
  });
});
