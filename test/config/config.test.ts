import { expect } from 'chai';
import { ConfigError, resolveConfig, settingsNeedingRestart } from '../../src/config/config.ts';

describe('configuration', () => {
  it('has working defaults with an empty environment', () => {
    const config = resolveConfig({});
    expect(config).to.deep.include({ port: 8080, databaseUrl: undefined, fetchIntervalMs: 10_000, workerCount: 5 });
    expect(config.messageMaxLength).to.equal(160);
    expect(config.webhook).to.deep.include({ url: undefined, timeoutMs: 5_000, maxAttempts: 5 });
    expect(config.redis.ttlSeconds).to.equal(604_800);
  });

  it('reads the documented environment names, coercing numbers', () => {
    const config = resolveConfig({
      PORT: '9000',
      WORKER_COUNT: '12',
      DATABASE_POOL_MAX: '20',
      WEBHOOK_URL: 'https://example.test/hook',
      WEBHOOK_AUTH_HEADER: 'x-ins-auth-key',
      WEBHOOK_AUTH_VALUE: 'secret',
      API_KEYS: 'a, b,,c',
      UNRELATED: 'ignored',
    });
    expect([config.port, config.workerCount, config.database.poolMax, config.webhook.authHeader]).to.deep.equal([
      9000,
      12,
      20,
      'x-ins-auth-key',
    ]);
    expect(config.apiKeys).to.deep.equal(['a', 'b', 'c']);
  });

  it('lets a later layer win: defaults < environment < Vault', () => {
    expect(resolveConfig({ WORKER_COUNT: '3' }, { WORKER_COUNT: '7' }).workerCount).to.equal(7);
    expect(resolveConfig({ WORKER_COUNT: '3' }, {}).workerCount).to.equal(3);
  });

  it('treats an empty value as unset', () => {
    expect(resolveConfig({ WEBHOOK_URL: '', PORT: '' })).to.deep.include({ port: 8080 });
  });

  const invalid: Array<[Record<string, string>, RegExp]> = [
    [{ PORT: 'eighty' }, /^Invalid configuration: PORT /],
    [{ WORKER_COUNT: '0' }, /^Invalid configuration: WORKER_COUNT .*>=1/],
    [
      { WORKER_COUNT: '9' },
      /^Invalid configuration: WORKER_COUNT must be at most DATABASE_POOL_MAX − 2 \(9 > 10 − 2\): the scheduler and the API share that pool/,
    ],
    [{ DATABASE_POOL_MAX: '2' }, /^Invalid configuration: DATABASE_POOL_MAX .*>=3/],
    [
      { DATABASE_DIRECT_URL: 'http://db/x' },
      /^Invalid configuration: DATABASE_DIRECT_URL must use postgres or postgresql/,
    ],
    [{ FETCH_INTERVAL_MS: '1.5' }, /^Invalid configuration: FETCH_INTERVAL_MS /],
    [{ WEBHOOK_URL: 'not a url' }, /^Invalid configuration: WEBHOOK_URL must be a URL/],
    [{ DATABASE_URL: 'mysql://db/x' }, /^Invalid configuration: DATABASE_URL must use postgres or postgresql$/],
    [{ LOG_LEVEL: 'chatty' }, /^Invalid configuration: LOG_LEVEL /],
    [{ WEBHOOK_AUTH_HEADER: 'x-key' }, /WEBHOOK_AUTH_HEADER and WEBHOOK_AUTH_VALUE must be set together/],
    [{ VAULT_ADDR: 'http://vault:8200' }, /VAULT_ADDR is set but neither VAULT_TOKEN nor VAULT_ROLE_ID/],
    [{ WEBHOOK_TIMEOUT_MS: '40000' }, /MESSAGE_LEASE_SECONDS must be at least twice WEBHOOK_TIMEOUT_MS/],
  ];
  for (const [env, message] of invalid) {
    it(`stops start-up on ${JSON.stringify(env)}, naming the key`, () => {
      expect(() => resolveConfig(env))
        .to.throw(ConfigError)
        .with.property('message')
        .that.matches(message);
    });
  }

  it('never echoes a secret value in the error', () => {
    expect(() => resolveConfig({ DATABASE_URL: 'mysql://user:hunter2@db/x' }))
      .to.throw(ConfigError)
      .with.property('message')
      .that.does.not.include('hunter2');
  });
});

describe('settings needing a restart', () => {
  it('names changed settings the service cannot apply live, judged on the merged layers', () => {
    const env = { PORT: '8080', DATABASE_URL: 'postgres://db/x' };
    expect(settingsNeedingRestart(env, {}, { WORKER_COUNT: '9', PORT: '9999', REDIS_TTL_SECONDS: '60' })).to.deep.equal(
      ['PORT', 'REDIS_TTL_SECONDS'],
    );
    // Vault now says what the environment said: nothing changed in effect.
    expect(settingsNeedingRestart(env, {}, { PORT: '8080' })).to.deep.equal([]);
    expect(settingsNeedingRestart(env, { MESSAGE_MAX_LENGTH: '70' }, {})).to.deep.equal([]);
  });
});
