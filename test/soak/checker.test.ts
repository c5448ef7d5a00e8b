import { expect } from 'chai';
import { check, type Observed } from './checker.ts';
import { History } from './history.ts';

/** The soak's checker on hand-made histories: it passes a clean one and names each kind of violation. */
describe('soak checker', () => {
  const t0 = Date.parse('2026-12-07T12:00:00Z');

  function world(): { history: History; observed: Observed } {
    const history = new History();
    history.intakes.push({
      at: t0,
      end: t0 + 10,
      pod: 'p1-1',
      key: 'k1',
      contents: ['soak 1 #1'],
      status: 201,
      outcome: 'ok',
      ids: ['m1'],
    });
    for (let second = 0; second <= 30; second += 1)
      history.jobSamples.push({ at: t0 + second * 1000, runCount: second });
    const observed: Observed = {
      rows: [{ id: 'm1', content: 'soak 1 #1', status: 'sent' }],
      deliveries: [{ key: 'm1', at: t0 + 100, status: 202 }],
      health: { 'p1-1': 200 },
      backendPeaks: [{ instance: 'p1-1', peak: 12, at: t0 }],
      budget: 15,
      shutdowns: { 'p1-1': { seconds: 1, code: 0 } },
      shutdownLimitSeconds: 7,
      leaseMs: 15_000,
      webhookTimeoutMs: 3_000,
      contentPrefix: 'soak 1 #',
    };
    return { history, observed };
  }

  it('passes a history where everything held', () => {
    const { history, observed } = world();
    expect(check(history, observed).violations).to.deep.equal([]);
  });

  it('names a message answered 201 that is not stored, and one stored but never delivered', () => {
    const { history, observed } = world();
    history.intakes.push({ ...history.intakes[0]!, contents: ['soak 1 #2'], ids: ['m2'], key: undefined });
    observed.rows.push({ id: 'm3', content: 'soak 1 #3', status: 'failed' });
    const { violations } = check(history, observed);
    expect(violations.some((v) => v.startsWith('lost: m2'))).to.equal(true);
    expect(violations.some((v) => v.startsWith('not delivered: m3'))).to.equal(true);
  });

  it('accepts a cancelled message only after a cancel answered 200', () => {
    const { history, observed } = world();
    observed.rows.push({ id: 'm4', content: 'soak 1 #4', status: 'cancelled' });
    expect(check(history, observed).violations).to.include('not delivered: m4 (status cancelled)');
    history.action({ at: t0, end: t0, pod: 'p1-1', kind: 'cancel', target: 'm4', status: 200, outcome: 'ok' });
    expect(check(history, observed).violations).to.deep.equal([]);
  });

  it('names a message delivered after a cancel answered 200, unless a retry came in between', () => {
    const { history, observed } = world();
    history.action({
      at: t0 + 20,
      end: t0 + 50,
      pod: 'p1-1',
      kind: 'cancel',
      target: 'm1',
      status: 200,
      outcome: 'ok',
    });
    expect(check(history, observed).violations.some((v) => v.startsWith('cancelled but sent: m1'))).to.equal(true);
    history.action({ at: t0 + 60, end: t0 + 70, pod: 'p1-1', kind: 'retry', target: 'm1', status: 200, outcome: 'ok' });
    expect(check(history, observed).violations).to.deep.equal([]);
  });

  it('explains a resend only by a fault within the first delivery’s lease', () => {
    const { history, observed } = world();
    observed.deliveries = [...observed.deliveries, { key: 'm1', at: t0 + 20_000, status: 202 }];
    expect(check(history, observed).violations.some((v) => v.startsWith('resend of m1'))).to.equal(true);
    history.faults.push({ kind: 'pod-kill', target: 'p1-1', start: t0 + 5_000, end: t0 + 6_000 });
    const verdict = check(history, { ...observed, rows: observed.rows });
    expect(verdict.violations.filter((v) => v.startsWith('resend'))).to.deep.equal([]);
    expect(verdict.summary.join('\n')).to.contain('{"pod-kill":1}');
  });

  it('names stuck messages, replays with other ids, 500s, pods over budget or unhealthy, a slow exit', () => {
    const { history, observed } = world();
    observed.rows.push({ id: 'm5', content: 'other', status: 'sending' });
    history.intakes.push({ ...history.intakes[0]!, replayOf: 0, ids: ['m9'] });
    history.serverError({ at: t0, pod: 'p1-1', request: 'POST /messages', status: 500, body: '{}' });
    observed.backendPeaks.push({ instance: 'p2-3', peak: 16, at: t0 });
    observed.health['p2-3'] = 503;
    observed.shutdowns['p2-3'] = { seconds: 30, code: null };
    const text = check(history, observed).violations.join('\n');
    for (const expected of [
      'stuck: m5',
      'replay of key k1',
      '500 from p1-1',
      'p2-3: 16 backends',
      'p2-3: /health-check 503',
      'p2-3: exited 30.0 s',
    ])
      expect(text).to.contain(expected);
  });

  it('names a job that stopped keeping its cadence in a calm window', () => {
    const { history, observed } = world();
    for (const sample of history.jobSamples) sample.runCount = Math.min(sample.runCount, 3);
    expect(check(history, observed).violations.some((v) => v.startsWith('cadence:'))).to.equal(true);
  });
});
