// A live change, taken the way a new Vault secret is (`LiveConfig.update`),
// reaches each component that uses the setting; a refused change reaches none.
import { expect } from 'chai';
import { ConfigError } from '../../src/config/config.ts';
import { useTestDatabase } from '../support/postgres.ts';
import { api, startTestService, type TestService } from '../support/service.ts';

describe('live settings in the running service', () => {
  const db = useTestDatabase();
  let service: TestService;
  before(async () => {
    service = await startTestService(db().url, {
      API_KEYS: 'first-key',
      FETCH_INTERVAL_MS: '3600000',
      MESSAGE_MAX_LENGTH: '10',
      WORKER_COUNT: '2',
    });
    await api(service.url, 'PUT', '/jobs/stop', undefined, { 'x-api-key': 'first-key' }); // nothing sends
  });
  after(() => service.stop());
  const post = (content: string, key: string) =>
    api(service.url, 'POST', '/messages', { to: '+905551111111', content }, { 'x-api-key': key });

  it('applies MESSAGE_MAX_LENGTH to intake, WORKER_COUNT to the workers and API_KEYS to the API', async () => {
    expect((await post('a'.repeat(8), 'first-key')).status).to.equal(201);
    expect(service.database.pool.options.max, 'DATABASE_POOL_MAX').to.equal(10);

    await service.live.update({ MESSAGE_MAX_LENGTH: '5', WORKER_COUNT: '7', API_KEYS: 'second-key' });

    expect((await post('a'.repeat(8), 'first-key')).status, 'the old key').to.equal(401);
    const tooLong = await post('a'.repeat(8), 'second-key');
    expect(tooLong.status).to.equal(400);
    expect(tooLong.body.error.message).to.match(/content must be 1 to 5 characters \(got 8\)/);
    expect((await post('a'.repeat(5), 'second-key')).status).to.equal(201);
    expect(service.live.current.workerCount).to.equal(7);
    expect(service.database.pool.options.max, 'the workers fit inside the pool; it does not grow').to.equal(10);
  });

  it('refuses a WORKER_COUNT the pool cannot serve (more than DATABASE_POOL_MAX − 2), naming the key', async () => {
    const refused = await service.live.update({ WORKER_COUNT: '9', API_KEYS: 'second-key' }).then(
      () => undefined,
      (error: unknown) => error,
    );
    expect(refused).to.be.instanceOf(ConfigError);
    expect((refused as ConfigError).key).to.equal('WORKER_COUNT');
    expect((refused as Error).message).to.include('must be at most DATABASE_POOL_MAX − 2 (9 > 10 − 2)');
    expect(service.live.current.workerCount).to.equal(7);
  });

  it('applies nothing of a change a guard refuses, though its other values are valid', async () => {
    const refused = await service.live.update({ MESSAGE_MAX_LENGTH: '3', WORKER_COUNT: '8', API_KEYS: '' }).then(
      () => undefined,
      (error: unknown) => error,
    );
    expect(refused).to.be.instanceOf(ConfigError);
    expect((refused as ConfigError).key).to.equal('API_KEYS');

    expect(service.live.current.messageMaxLength).to.equal(5);
    expect((await post('a'.repeat(5), 'second-key')).status, 'MESSAGE_MAX_LENGTH still 5').to.equal(201);
    expect(service.live.current.workerCount, 'WORKER_COUNT still 7').to.equal(7);
    expect((await post('a'.repeat(5), 'first-key')).status, 'API_KEYS still second-key').to.equal(401);
  });
});
