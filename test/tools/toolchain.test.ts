import { expect } from 'chai';

describe('toolchain', () => {
  it('runs on node 24', () => {
    expect(Number(process.versions.node.split('.')[0])).to.be.at.least(24);
  });
});
