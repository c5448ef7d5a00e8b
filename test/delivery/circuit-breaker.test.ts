import { expect } from 'chai';
import { CircuitBreaker } from '../../src/delivery/policies/circuit-breaker.ts';

/** The breaker's state machine on its own (the delivery loop tests show it with a real webhook). */
describe('webhook circuit breaker', () => {
  const open = new AbortController().signal;

  it('opens after the threshold of consecutive transient failures; an answer in between resets the count', async () => {
    const breaker = new CircuitBreaker({ threshold: 3 });
    breaker.record('transient', false);
    breaker.record('transient', false);
    breaker.record('answered', false);
    breaker.record('transient', false);
    breaker.record('transient', false);
    expect(breaker.state).to.equal('closed');
    expect(await breaker.turn(open)).to.equal('normal');
    breaker.record('transient', false);
    expect(breaker.state).to.equal('open');
    expect(breaker.allowsDelivery()).to.equal(false);
  });

  it('gives one caller the probe after the pause, doubles the pause on a failed probe, closes on an answer', async () => {
    const breaker = new CircuitBreaker({ threshold: 1, firstProbeDelayMs: 40, maxProbeDelayMs: 100 });
    breaker.record('transient', false);
    let started = Date.now();
    expect(await breaker.turn(open)).to.equal('probe');
    expect(Date.now() - started).to.be.at.least(35);
    expect(breaker.state).to.equal('half-open');
    // Everyone else waits while the probe is out.
    let second: string | undefined;
    const waiting = breaker.turn(open).then((turn) => (second = turn));
    breaker.record('transient', true);
    started = Date.now();
    expect(await waiting).to.equal('probe');
    expect(Date.now() - started, 'second pause is doubled').to.be.at.least(75);
    expect(second).to.equal('probe');
    breaker.record('transient', true); // 160 ms, capped at 100
    started = Date.now();
    expect(await breaker.turn(open)).to.equal('probe');
    expect(Date.now() - started).to.be.within(90, 400);
    breaker.record('answered', true);
    expect(breaker.state).to.equal('closed');
    expect(await breaker.turn(open)).to.equal('normal');
  });

  it('a probe that never reports back is presumed lost after the longest pause: another caller probes', async () => {
    const breaker = new CircuitBreaker({ threshold: 1, firstProbeDelayMs: 10, maxProbeDelayMs: 80 });
    breaker.record('transient', false);
    expect(await breaker.turn(open)).to.equal('probe');
    const started = Date.now();
    expect(await breaker.turn(open)).to.equal('probe');
    expect(Date.now() - started).to.be.within(70, 400);
  });

  it('a caller waiting on an open breaker stops when its signal aborts', async () => {
    const breaker = new CircuitBreaker({ threshold: 1, firstProbeDelayMs: 60_000 });
    breaker.record('transient', false);
    const stop = new AbortController();
    const waiting = breaker.turn(stop.signal).then(
      () => 'turn',
      () => 'aborted',
    );
    stop.abort();
    expect(await waiting).to.equal('aborted');
  });
});
