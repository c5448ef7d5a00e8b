// A burst that finds every connection of the main pool busy waits for one at
// most DATABASE_CONNECT_TIMEOUT_MS, then answers 503 `unavailable` with
// Retry-After: it never opens a connection beyond DATABASE_POOL_MAX. Real
// HTTP, a real PostgreSQL; the test itself holds the pool's connections.
import { expect } from 'chai';
import type { PoolClient } from '../../src/db/pool.ts';
import { useTestDatabase } from '../support/postgres.ts';
import { api, startTestService, type TestService } from '../support/service.ts';

describe('the main pool exhausted: requests wait within a bound, then 503', function () {
  this.timeout(60_000);
  const db = useTestDatabase();
  let service: TestService;
  const held: PoolClient[] = [];
  const instanceId = `pool-exhausted-${process.pid}`;
  const backends = async () =>
    (
      await db().pool.query('SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = $1', [
        `job-manager ${instanceId}`,
      ])
    ).rows[0].n as number;

  before(async () => {
    service = await startTestService(
      db().url,
      { INSTANCE_ID: instanceId, DATABASE_POOL_MAX: '3', WORKER_COUNT: '1', DATABASE_CONNECT_TIMEOUT_MS: '300' },
      { startEngine: false },
    );
  });
  after(async () => {
    for (const client of held.splice(0)) client.release();
    await service?.stop();
  });

  it('answers 503 unavailable with Retry-After while all 3 are held, never opening a 4th, and 200 once one frees', async () => {
    for (let index = 0; index < 3; index += 1) held.push(await service.database.pool.connect());
    const answers = await Promise.all(Array.from({ length: 10 }, () => api(service.url, 'GET', '/jobs')));
    expect(answers.map((answer) => [answer.status, answer.body.error?.code])).to.deep.equal(
      answers.map(() => [503, 'unavailable']),
    );
    expect(answers.map((answer) => answer.headers.get('retry-after'))).to.deep.equal(answers.map(() => '5'));
    expect(await backends(), 'connections of the main pool').to.equal(3);

    held.pop()!.release();
    expect((await api(service.url, 'GET', '/jobs')).status).to.equal(200);
    expect(await backends()).to.equal(3);
  });
});
