import { expect } from 'chai';
import { deliveryChunkSize } from '../../src/delivery/policies/lanes.ts';

describe('delivery chunk size', () => {
  it('is four sends per lane when four webhook timeouts fit in half the lease', () => {
    expect(deliveryChunkSize({ concurrency: 10, messageLeaseSeconds: 60, timeoutMs: 5_000 })).to.equal(40);
  });

  it('shrinks as the timeout grows, so a chunk always ends within half its lease', () => {
    expect(deliveryChunkSize({ concurrency: 10, messageLeaseSeconds: 60, timeoutMs: 10_000 })).to.equal(30);
    expect(deliveryChunkSize({ concurrency: 10, messageLeaseSeconds: 60, timeoutMs: 15_000 })).to.equal(20);
  });

  it('never drops below one send per lane (the configuration keeps the lease at least twice the timeout)', () => {
    expect(deliveryChunkSize({ concurrency: 3, messageLeaseSeconds: 10, timeoutMs: 5_000 })).to.equal(3);
  });
});
