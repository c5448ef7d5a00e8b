// HOST, ALLOW_UNAUTHENTICATED and TRUST_PROXY: defaults, parsing, and the
// refusal to serve an open API to the network.
import { expect } from 'chai';
import { ConfigError, resolveConfig } from '../../src/config/config.ts';
import { isLoopbackHost, listenHost, parseTrustProxy } from '../../src/config/network.ts';

describe('network settings', () => {
  it('listens on 127.0.0.1 without API_KEYS and on 0.0.0.0 with them, unless HOST says otherwise', () => {
    expect(listenHost(resolveConfig({}))).to.equal('127.0.0.1');
    expect(listenHost(resolveConfig({ API_KEYS: 'k' }))).to.equal('0.0.0.0');
    expect(listenHost(resolveConfig({ API_KEYS: ' , ' })), 'blank keys are no keys').to.equal('127.0.0.1');
    expect(listenHost(resolveConfig({ API_KEYS: 'k', HOST: '127.0.0.1' }))).to.equal('127.0.0.1');
    expect(listenHost(resolveConfig({ HOST: '::1' }))).to.equal('::1');
    expect(listenHost(resolveConfig({ HOST: 'localhost' }))).to.equal('localhost');
    expect(listenHost(resolveConfig({ HOST: '0.0.0.0', ALLOW_UNAUTHENTICATED: 'true' }))).to.equal('0.0.0.0');
  });

  it('refuses a non-loopback HOST without API_KEYS, naming HOST', () => {
    for (const host of ['0.0.0.0', '::', '192.0.2.10', 'example.internal']) {
      expect(() => resolveConfig({ HOST: host }), host)
        .to.throw(ConfigError, `Invalid configuration: HOST is ${host}, which is reachable from the network`)
        .with.property('key', 'HOST');
      expect(() => resolveConfig({ HOST: host, ALLOW_UNAUTHENTICATED: 'false' }), host).to.throw(ConfigError);
    }
  });

  it('validates the values themselves', () => {
    expect(() => resolveConfig({ HOST: 'not a host!' })).to.throw(
      ConfigError,
      'HOST must be an IP address or a host name',
    );
    expect(() => resolveConfig({ ALLOW_UNAUTHENTICATED: 'yes' })).to.throw(
      ConfigError,
      'ALLOW_UNAUTHENTICATED must be true or false',
    );
    expect(() => resolveConfig({ TRUST_PROXY: '10.0.0.0/33' })).to.throw(
      ConfigError,
      /TRUST_PROXY must be false, true, a hop count/,
    );
    expect(() => resolveConfig({ TRUST_PROXY: 'nginx' })).to.throw(ConfigError, /"nginx" is none of these/);
  });

  it('knows loopback addresses', () => {
    for (const host of ['127.0.0.1', '127.8.9.10', '::1', '[::1]', 'localhost', 'LOCALHOST', '::ffff:127.0.0.1']) {
      expect(isLoopbackHost(host), host).to.equal(true);
    }
    for (const host of ['0.0.0.0', '::', '10.0.0.1', '128.0.0.1', 'example.com', '::ffff:10.0.0.1']) {
      expect(isLoopbackHost(host), host).to.equal(false);
    }
  });

  it('reads TRUST_PROXY as express trust proxy: false, a hop count, or addresses and CIDRs', () => {
    expect(parseTrustProxy(undefined)).to.equal(false);
    expect(parseTrustProxy('')).to.equal(false);
    expect(parseTrustProxy('false')).to.equal(false);
    expect(parseTrustProxy('true')).to.equal(true);
    expect(parseTrustProxy('2')).to.equal(2);
    expect(parseTrustProxy('10.0.0.0/8, 172.16.0.0/12,fd00::/8')).to.deep.equal([
      '10.0.0.0/8',
      '172.16.0.0/12',
      'fd00::/8',
    ]);
    expect(parseTrustProxy('loopback,uniquelocal')).to.deep.equal(['loopback', 'uniquelocal']);
    expect(resolveConfig({ TRUST_PROXY: '127.0.0.1' }).trustProxy).to.deep.equal(['127.0.0.1']);
    expect(resolveConfig({}).trustProxy).to.equal(false);
  });
});
