import { expect } from 'chai';
import { api, useTestService } from '../support/service.ts';

describe('jobs API over HTTP', () => {
  const { db, service } = useTestService({ FETCH_INTERVAL_MS: '60000' });
  const call = (method: string, path: string, body?: unknown) => api(service().url, method, path, body);

  it('lists the seeded message-sender job, active, with the documented fields', async () => {
    const { status, body } = await call('GET', '/jobs');
    expect(status).to.equal(200);
    const job = body.jobs.find((candidate: { name: string }) => candidate.name === 'message-sender');
    expect(job).to.include({ handler: 'send-messages', intervalSeconds: 120, batchSize: 2 });
    expect(job.status).to.be.oneOf(['active', 'in_progress']);
    for (const field of ['lastTriggeredAt', 'nextRunAt', 'createdAt', 'updatedAt']) expect(job).to.have.property(field);
  });

  it('creates a job (inactive unless asked), refuses a duplicate with 409 and an unknown handler with 400', async () => {
    const created = await call('POST', '/jobs', {
      name: 'nightly',
      handler: 'send-messages',
      intervalSeconds: 60,
      batchSize: 10,
    });
    expect(created.status).to.equal(201);
    expect(created.body).to.include({ name: 'nightly', status: 'inactive', intervalSeconds: 60, batchSize: 10 });
    const duplicate = await call('POST', '/jobs', {
      name: 'nightly',
      handler: 'send-messages',
      intervalSeconds: 60,
      batchSize: 10,
    });
    expect(duplicate.status).to.equal(409);
    expect(duplicate.body.error.code).to.equal('job_exists');
    const unknown = await call('POST', '/jobs', {
      name: 'x',
      handler: 'mine-bitcoin',
      intervalSeconds: 60,
      batchSize: 1,
    });
    expect(unknown.status).to.equal(400);
    expect(unknown.body.error.message).to.match(/handler "mine-bitcoin" is not registered/);
  });

  it('validates ranges: interval 1..86400 s, batch 1..10000', async () => {
    for (const body of [
      { name: 'a', handler: 'send-messages', intervalSeconds: 0, batchSize: 1 },
      { name: 'a', handler: 'send-messages', intervalSeconds: 86_401, batchSize: 1 },
      { name: 'a', handler: 'send-messages', intervalSeconds: 10, batchSize: 10_001 },
      { name: 'a', handler: 'send-messages', intervalSeconds: 10 },
    ]) {
      const answer = await call('POST', '/jobs', body);
      expect(answer.status, JSON.stringify(body)).to.equal(400);
      expect(answer.body.error.code).to.equal('validation_failed');
    }
  });

  it('starts and stops one job or all, idempotently, and 404s an unknown name', async () => {
    const started = await call('PUT', '/jobs/start', { name: 'nightly' });
    expect(started.status).to.equal(200);
    expect(started.body.jobs).to.have.length(1);
    expect(started.body.jobs[0].status).to.be.oneOf(['active', 'in_progress']);
    expect((await call('PUT', '/jobs/start', { name: 'nightly' })).status).to.equal(200);
    const stoppedAll = await call('PUT', '/jobs/stop');
    expect(stoppedAll.status).to.equal(200);
    expect(stoppedAll.body.jobs.map((job: { status: string }) => job.status)).to.deep.equal(['inactive', 'inactive']);
    expect((await call('PUT', '/jobs/stop', {})).body.jobs).to.have.length(2);
    const missing = await call('PUT', '/jobs/start', { name: 'ghost' });
    expect(missing.status).to.equal(404);
    expect(missing.body.error.code).to.equal('job_not_found');
  });

  it('treats an empty body as no body whatever its Content-Type says: every job', async () => {
    // The contract: "no body or no name: every job". Clients (curl -d '', form posts) label empty bodies.
    const labelled = (method: string, path: string, body: string, headers: Record<string, string>) =>
      api(service().url, method, path, body, headers);
    for (const contentType of ['text/plain', 'application/x-www-form-urlencoded', 'application/json']) {
      for (const path of ['/jobs/stop', '/jobs/start']) {
        const answer = await labelled('PUT', path, '', { 'content-type': contentType });
        expect(answer.status, `${path} ${contentType}`).to.equal(200);
        expect(answer.body.jobs, `${path} ${contentType}`).to.have.length(2);
      }
    }
    const retried = await labelled('POST', '/messages/retry-failed', '', { 'content-type': 'text/plain' });
    expect([retried.status, retried.body]).to.deep.equal([200, { retried: 0 }]);
    // A body that is there still has to be JSON.
    expect((await labelled('PUT', '/jobs/stop', 'nightly', { 'content-type': 'text/plain' })).status).to.equal(415);
    expect((await labelled('POST', '/jobs', '', { 'content-type': 'text/plain' })).body.error.code).to.equal(
      'missing_body',
    );
  });

  it('gets one job, patches its settings, and 404s unknown names', async () => {
    expect((await call('GET', '/jobs/nightly')).body.name).to.equal('nightly');
    expect((await call('GET', '/jobs/ghost')).status).to.equal(404);
    const patched = await call('PATCH', '/jobs/nightly', { intervalSeconds: 30 });
    expect(patched.status).to.equal(200);
    expect(patched.body).to.include({ intervalSeconds: 30, batchSize: 10 });
    expect((await call('PATCH', '/jobs/nightly', {})).status).to.equal(400);
    expect((await call('PATCH', '/jobs/ghost', { batchSize: 1 })).status).to.equal(404);
  });

  it('answers 404 job_not_found for any name no job has, even one no job could have', async () => {
    // openapi.yaml: an unknown name is 404. The name format is a rule for creating jobs, not for looking them up.
    for (const name of ['Nightly', 'no such job', 'x'.repeat(100), 'nul\u0000byte', 'ünïcode']) {
      const path = `/jobs/${encodeURIComponent(name)}`;
      for (const [method, where, body] of [
        ['GET', path, undefined],
        ['PATCH', path, { batchSize: 1 }],
        ['PUT', '/jobs/start', { name }],
        ['PUT', '/jobs/stop', { name }],
      ] as const) {
        const answer = await call(method, where, body);
        expect(answer.status, `${method} ${where} ${JSON.stringify(body)}`).to.equal(404);
        expect(answer.body.error.code, `${method} ${where}`).to.equal('job_not_found');
      }
    }
    // Creating one is still held to the format.
    const created = await call('POST', '/jobs', {
      name: 'Nightly',
      handler: 'send-messages',
      intervalSeconds: 1,
      batchSize: 1,
    });
    expect(created.status).to.equal(400);
  });

  it('brings the next run forward when the interval gets shorter, and leaves it when it gets longer', async () => {
    await call('POST', '/jobs', { name: 'daily', handler: 'send-messages', intervalSeconds: 86_400, batchSize: 1 });
    await call('PUT', '/jobs/start', { name: 'daily' });
    await call('PUT', '/jobs/stop', { name: 'daily' });
    await db().pool.query(`UPDATE jobs SET next_run_at = now() + interval '1 day' WHERE name = 'daily'`);
    // Measured from the change itself (updatedAt is the PATCH's now()), not from when the answer arrived.
    const secondsAfterChange = (job: { nextRunAt: string; updatedAt: string }) =>
      (Date.parse(job.nextRunAt) - Date.parse(job.updatedAt)) / 1000;
    const shorter = await call('PATCH', '/jobs/daily', { intervalSeconds: 5 });
    expect(secondsAfterChange(shorter.body), 'no waiting out the old day').to.equal(5);
    const longer = await call('PATCH', '/jobs/daily', { intervalSeconds: 3_600 });
    expect(Date.parse(longer.body.nextRunAt)).to.equal(Date.parse(shorter.body.nextRunAt));
  });

  it('refuses the job names start and stop, which are the switches', async () => {
    for (const name of ['start', 'stop']) {
      const answer = await call('POST', '/jobs', { name, handler: 'send-messages', intervalSeconds: 60, batchSize: 1 });
      expect(answer.status, name).to.equal(400);
      expect(answer.body.error.code).to.equal('reserved_job_name');
    }
    const { rows } = await db().pool.query(`SELECT count(*)::int AS n FROM jobs WHERE name IN ('start', 'stop')`);
    expect(rows[0].n).to.equal(0);
    // The schema holds the same invariant.
    const direct = await db()
      .pool.query(`INSERT INTO jobs (name, handler, interval_seconds, batch_size) VALUES ('stop', 'x', 1, 1)`)
      .catch((error: { constraint?: string }) => error.constraint);
    expect(direct).to.equal('jobs_name_not_reserved');
  });

  it('answers malformed JSON, unknown routes and wrong methods with the error shape, never a stack', async () => {
    const malformed = await api(service().url, 'POST', '/jobs', '{"name": ', {});
    expect(malformed.status).to.equal(400);
    expect(malformed.body.error.code).to.equal('malformed_json');
    const unknownRoute = await call('GET', '/nope');
    expect(unknownRoute.status).to.equal(404);
    expect(unknownRoute.body.error).to.have.keys(['code', 'message']);
    const wrongMethod = await call('DELETE', '/jobs');
    expect(wrongMethod.status).to.equal(405);
    expect(JSON.stringify(wrongMethod.body)).to.not.match(/at .*\.ts:\d+/);
  });

  it('refuses a body over the size limit with 413', async () => {
    const huge = await call('POST', '/messages/batch', {
      messages: [{ to: '+905551111111', content: 'x'.repeat(3_000_000) }],
    });
    expect(huge.status).to.equal(413);
    expect(huge.body.error.code).to.equal('payload_too_large');
  });
});
