import { expect } from 'chai';
import { dispatchChunkSize } from '../../src/delivery/loop.ts';

describe('dispatch chunk size', () => {
  it('is four sends per lane when four webhook timeouts fit in half the lease', () => {
    expect(dispatchChunkSize({ concurrency: 10, messageLeaseSeconds: 60, timeoutMs: 5_000 })).to.equal(40);
  });

  it('shrinks as the timeout grows, so a chunk always ends within half its lease', () => {
    expect(dispatchChunkSize({ concurrency: 10, messageLeaseSeconds: 60, timeoutMs: 10_000 })).to.equal(30);
    expect(dispatchChunkSize({ concurrency: 10, messageLeaseSeconds: 60, timeoutMs: 15_000 })).to.equal(20);
  });

  it('never drops below one send per lane (the configuration keeps the lease at least twice the timeout)', () => {
    expect(dispatchChunkSize({ concurrency: 3, messageLeaseSeconds: 10, timeoutMs: 5_000 })).to.equal(3);
  });
});
