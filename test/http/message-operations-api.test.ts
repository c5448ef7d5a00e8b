import { request as httpRequest } from 'node:http';
import { expect } from 'chai';
import { claimMessages } from '../../src/db/sqlc/messages_sql.ts';
import { runMaintenancePass } from '../../src/maintenance/maintenance.ts';
import { silentLogger } from '../../src/observability/logger.ts';
import { useTestDatabase } from '../support/postgres.ts';
import { api, startTestService, type TestService } from '../support/service.ts';

/** Send later, cancel and retry, the operators' search and idempotent intake, over real HTTP and PostgreSQL. */
describe('message operations over HTTP', () => {
  const db = useTestDatabase();
  let service: TestService;
  before(async () => {
    service = await startTestService(db().url, { FETCH_INTERVAL_MS: '60000' });
    await api(service.url, 'PUT', '/jobs/stop'); // nothing sends unless a test claims
  });
  after(() => service.stop());
  const call = (method: string, path: string, body?: unknown, headers?: Record<string, string>) =>
    api(service.url, method, path, body, headers);
  const count = async () => Number((await db().pool.query('SELECT count(*) AS n FROM messages')).rows[0].n);
  const create = async (body: Record<string, unknown> = {}) => {
    const answer = await call('POST', '/messages', { to: '+905551111111', content: 'hello', ...body });
    expect(answer.status, JSON.stringify(answer.body)).to.equal(201);
    return answer.body;
  };
  const setStatus = (id: string, status: string) =>
    db().pool.query(
      `UPDATE messages SET status = $2,
         lease_until = CASE WHEN $2 = 'sending' THEN now() + interval '1 minute' END,
         locked_by = CASE WHEN $2 = 'sending' THEN 'someone' END,
         sent_at = CASE WHEN $2 = 'sent' THEN now() END,
         external_message_id = CASE WHEN $2 = 'sent' THEN 'ext-1' END,
         attempts = CASE WHEN $2 IN ('failed', 'sent', 'sending') THEN 3 ELSE attempts END
       WHERE id = $1`,
      [id, status],
    );

  describe('sendAt', () => {
    it('is null when absent and held back until then when ahead', async () => {
      const now = await create();
      expect(now.sendAt).to.equal(null);
      const at = new Date(Date.now() + 3_600_000);
      const later = await create({ sendAt: at.toISOString().replace('Z', '+00:00') });
      expect(later.sendAt).to.equal(at.toISOString());
      const claimed = await claimMessages(db().pool, {
        owner: 't',
        maxMessages: 100,
        leaseSeconds: 60,
        executionId: null,
      });
      expect(claimed.map((row) => row.id))
        .to.include(now.id)
        .and.not.include(later.id);
      expect((await call('GET', `/messages/${later.id}`)).body).to.include({
        status: 'pending',
        sendAt: at.toISOString(),
      });
    });

    it('takes a past sendAt as "at once", keeps it on the message, and reads offsets', async () => {
      const past = await create({ sendAt: '2020-01-01T03:00:00+03:00' });
      expect(past.sendAt).to.equal('2020-01-01T00:00:00.000Z');
      const claimed = await claimMessages(db().pool, {
        owner: 't',
        maxMessages: 100,
        leaseSeconds: 60,
        executionId: null,
      });
      expect(claimed.map((row) => row.id)).to.include(past.id);
    });

    it('accepts a sendAt per batch item', async () => {
      const at = new Date(Date.now() + 60_000).toISOString();
      const answer = await call('POST', '/messages/batch', {
        messages: [
          { to: '+905551111111', content: 'a' },
          { to: '+905551111112', content: 'b', sendAt: at },
        ],
      });
      expect(answer.status).to.equal(201);
      expect(answer.body.items.map((item: { sendAt: string | null }) => item.sendAt)).to.deep.equal([null, at]);
    });

    it('refuses a sendAt that is not an RFC 3339 date-time, storing nothing', async () => {
      const before = await count();
      for (const sendAt of [
        'tomorrow',
        '2026-02-30T09:00:00Z',
        '2026-12-01T09:00:00',
        '2026-12-01T25:00:00Z',
        1_700_000_000,
        // Valid text, but the instant has no four-digit UTC year to be answered in.
        '9999-12-31T23:59:59-23:59',
        '0001-01-01T00:00:00+23:59',
      ]) {
        const answer = await call('POST', '/messages', { to: '+905551111111', content: 'x', sendAt });
        expect(answer.status, String(sendAt)).to.equal(400);
        // docs/api.md: "an impossible date or one without an offset is a 400 invalid_send_at".
        expect(answer.body.error.code, String(sendAt)).to.equal('invalid_send_at');
        expect(answer.body.error.message, String(sendAt)).to.match(/sendAt/);
      }
      const batch = await call('POST', '/messages/batch', {
        messages: [
          { to: '+905551111111', content: 'ok' },
          { to: '+905551111111', content: 'bad', sendAt: '2026-13-01T00:00:00Z' },
        ],
      });
      expect(batch.status).to.equal(400);
      expect(batch.body.error.message).to.match(/messages\[1\]\.sendAt/);
      const noOffset = await call('POST', '/messages/batch', {
        messages: [
          { to: '+905551111111', content: 'ok' },
          { to: '+905551111111', content: 'bad', sendAt: '2026-12-01T09:00:00' },
        ],
      });
      expect(noOffset.body.error.code).to.equal('invalid_send_at');
      expect(noOffset.body.error.message).to.match(/messages\[1\]\.sendAt/);
      expect(await count()).to.equal(before);
    });
  });

  describe('cancel', () => {
    it('cancels a pending message, then answers the same again', async () => {
      const message = await create();
      const first = await call('POST', `/messages/${message.id}/cancel`);
      expect(first.status).to.equal(200);
      expect(first.body).to.include({ id: message.id, status: 'cancelled' });
      const again = await call('POST', `/messages/${message.id}/cancel`);
      expect(again.status).to.equal(200);
      expect(again.body).to.deep.equal(first.body);
      const claimed = await claimMessages(db().pool, {
        owner: 't',
        maxMessages: 1000,
        leaseSeconds: 60,
        executionId: null,
      });
      expect(claimed.map((row) => row.id)).to.not.include(message.id);
    });

    it('cancels a failed message', async () => {
      const message = await create();
      await setStatus(message.id, 'failed');
      const answer = await call('POST', `/messages/${message.id}/cancel`);
      expect(answer.status).to.equal(200);
      expect(answer.body.status).to.equal('cancelled');
    });

    for (const status of ['sending', 'sent']) {
      it(`answers 409 not_cancellable for a ${status} message and changes nothing`, async () => {
        const message = await create();
        await setStatus(message.id, status);
        const answer = await call('POST', `/messages/${message.id}/cancel`);
        expect(answer.status).to.equal(409);
        expect(answer.body.error.code).to.equal('not_cancellable');
        expect((await call('GET', `/messages/${message.id}`)).body.status).to.equal(status);
      });
    }

    it('answers 404 for an unknown id and 400 for a malformed one', async () => {
      const unknown = await call('POST', '/messages/0f8fad5b-d9cb-469f-a165-70867728950e/cancel');
      expect(unknown.status).to.equal(404);
      expect((await call('POST', '/messages/nope/cancel')).status).to.equal(400);
    });

    it('races a claim 100 times: the database picks one, never both', async function () {
      this.timeout(60_000);
      let cancelled = 0;
      let claimedCount = 0;
      for (let round = 0; round < 100; round += 1) {
        const message = await create();
        const [claim, cancel] = await Promise.all([
          claimMessages(db().pool, { owner: `race-${round}`, maxMessages: 1000, leaseSeconds: 60, executionId: null }),
          call('POST', `/messages/${message.id}/cancel`),
        ]);
        const claimed = claim.some((row) => row.id === message.id);
        const final = (await call('GET', `/messages/${message.id}`)).body.status;
        if (claimed) {
          claimedCount += 1;
          expect(cancel.status, `round ${round}`).to.equal(409);
          expect(cancel.body.error.code).to.equal('not_cancellable');
          expect(final).to.equal('sending');
        } else {
          cancelled += 1;
          expect(cancel.status, `round ${round}`).to.equal(200);
          expect(final).to.equal('cancelled');
        }
        await db().pool.query(
          "UPDATE messages SET status = 'cancelled', lease_until = NULL, locked_by = NULL WHERE status = 'sending'",
        );
      }
      expect(cancelled + claimedCount).to.equal(100);
    });
  });

  describe('retry', () => {
    it('puts a failed message back to pending with a fresh attempt budget, keeping its id', async () => {
      const message = await create();
      await setStatus(message.id, 'failed');
      const answer = await call('POST', `/messages/${message.id}/retry`);
      expect(answer.status).to.equal(200);
      expect(answer.body).to.include({ id: message.id, status: 'pending', attempts: 0 });
      const claimed = await claimMessages(db().pool, {
        owner: 't',
        maxMessages: 1000,
        leaseSeconds: 60,
        executionId: null,
      });
      expect(claimed.map((row) => row.id)).to.include(message.id);
    });

    it('puts a cancelled message back to pending, still holding it until its sendAt', async () => {
      const at = new Date(Date.now() + 3_600_000).toISOString();
      const message = await create({ sendAt: at });
      await call('POST', `/messages/${message.id}/cancel`);
      const answer = await call('POST', `/messages/${message.id}/retry`);
      expect(answer.status).to.equal(200);
      expect(answer.body).to.include({ status: 'pending', sendAt: at });
      const claimed = await claimMessages(db().pool, {
        owner: 't',
        maxMessages: 1000,
        leaseSeconds: 60,
        executionId: null,
      });
      expect(claimed.map((row) => row.id)).to.not.include(message.id);
    });

    for (const status of ['pending', 'sending', 'sent']) {
      it(`answers 409 not_retryable for a ${status} message`, async () => {
        const message = await create();
        await setStatus(message.id, status);
        const answer = await call('POST', `/messages/${message.id}/retry`);
        expect(answer.status).to.equal(409);
        expect(answer.body.error.code).to.equal('not_retryable');
        expect((await call('GET', `/messages/${message.id}`)).body.status).to.equal(status);
      });
    }

    it('answers 404 for an unknown id', async () => {
      expect((await call('POST', '/messages/0f8fad5b-d9cb-469f-a165-70867728950e/retry')).status).to.equal(404);
    });
  });

  describe('retry-failed', () => {
    beforeEach(() => db().pool.query("UPDATE messages SET status = 'cancelled' WHERE status = 'failed'"));

    it('retries every failed message in batches of 1,000 and counts them', async function () {
      this.timeout(30_000);
      await db().pool.query(
        `INSERT INTO messages (recipient, content, status, attempts, last_error)
         SELECT '+905551111111', 'f' || i, 'failed', 5, 'HTTP 500' FROM generate_series(1, 2500) AS i`,
      );
      const answer = await call('POST', '/messages/retry-failed');
      expect(answer.status).to.equal(200);
      expect(answer.body).to.deep.equal({ retried: 2500 });
      const left = await db().pool.query("SELECT count(*)::int AS n FROM messages WHERE status = 'failed'");
      expect(left.rows[0].n).to.equal(0);
      const reset = await db().pool.query(
        "SELECT count(*)::int AS n FROM messages WHERE content LIKE 'f%' AND status = 'pending' AND attempts = 0",
      );
      expect(reset.rows[0].n).to.equal(2500);
      expect((await call('POST', '/messages/retry-failed', {})).body).to.deep.equal({ retried: 0 });
    });

    it('retries only those that failed in [since, until)', async () => {
      const ids: string[] = [];
      for (const failedAt of ['2026-01-01T10:00:00Z', '2026-01-01T11:00:00Z', '2026-01-01T12:00:00Z']) {
        const message = await create();
        await db().pool.query("UPDATE messages SET status = 'failed', updated_at = $2 WHERE id = $1", [
          message.id,
          failedAt,
        ]);
        ids.push(message.id);
      }
      const answer = await call('POST', '/messages/retry-failed', {
        since: '2026-01-01T11:00:00Z',
        until: '2026-01-01T12:00:00Z',
      });
      expect(answer.body).to.deep.equal({ retried: 1 });
      const statuses = await Promise.all(ids.map(async (id) => (await call('GET', `/messages/${id}`)).body.status));
      expect(statuses).to.deep.equal(['failed', 'pending', 'failed']);
    });

    it('refuses a bad range with 400, changing nothing', async () => {
      for (const body of [
        { since: 'yesterday' },
        { since: '2026-01-02T00:00:00Z', until: '2026-01-01T00:00:00Z' },
        { since: '2026-01-01T00:00:00Z', extra: true },
      ]) {
        const answer = await call('POST', '/messages/retry-failed', body);
        expect(answer.status, JSON.stringify(body)).to.equal(400);
      }
    });
  });

  describe('GET /messages', () => {
    it('finds by recipient and status, newest first, with keyset paging', async () => {
      const to = '+905559990001';
      const made = [];
      for (let index = 0; index < 5; index += 1) made.push(await create({ to, content: `find ${index}` }));
      await call('POST', `/messages/${made[1].id}/cancel`);
      await call('POST', `/messages/${made[3].id}/cancel`);

      const first = await call('GET', `/messages?to=${encodeURIComponent(to)}&limit=3`);
      expect(first.status).to.equal(200);
      expect(first.body.items.map((item: { id: string }) => item.id)).to.deep.equal(
        [made[4], made[3], made[2]].map((item) => item.id),
      );
      const second = await call(
        'GET',
        `/messages?to=${encodeURIComponent(to)}&limit=3&cursor=${first.body.nextCursor}`,
      );
      expect(second.body.items.map((item: { id: string }) => item.id)).to.deep.equal([made[1].id, made[0].id]);
      expect(second.body.nextCursor).to.equal(null);

      const cancelled = await call('GET', `/messages?status=cancelled&to=${encodeURIComponent(to)}`);
      expect(cancelled.body.items.map((item: { id: string }) => item.id)).to.deep.equal([made[3].id, made[1].id]);
      // An unencoded "+" arrives as a space; it is read as "+".
      const unencoded = await call('GET', `/messages?to=${to}&status=cancelled`);
      expect(unencoded.body.items).to.have.length(2);

      const everything = await call('GET', '/messages?limit=1');
      expect(everything.body.items[0].id).to.equal(made[4].id);
    });

    it('refuses a recipient that is not E.164', async () => {
      const answer = await call('GET', '/messages?to=905551111111');
      expect(answer.status).to.equal(400);
      expect(answer.body.error.code).to.equal('invalid_phone_number');
    });
  });

  describe('Idempotency-Key', () => {
    const keyed = (key: string, body: unknown, path = '/messages') =>
      call('POST', path, body, { 'Idempotency-Key': key });

    it('answers a repeat with the original status and body, marked replayed, storing nothing', async () => {
      const body = { to: '+905551111111', content: 'once', sendAt: null };
      const first = await keyed('order-1', body);
      expect(first.status).to.equal(201);
      expect(first.headers.get('idempotent-replayed')).to.equal(null);
      const before = await count();
      // Same body with other key order and spacing is the same body.
      const repeat = await keyed('order-1', '{"sendAt": null, "content": "once",  "to": "+905551111111"}');
      expect(repeat.status).to.equal(201);
      expect(repeat.headers.get('idempotent-replayed')).to.equal('true');
      expect(repeat.body).to.deep.equal(first.body);
      // Byte for byte: the same keys in the same order (JSON.parse keeps the order it read).
      expect(JSON.stringify(repeat.body)).to.equal(JSON.stringify(first.body));
      expect(await count()).to.equal(before);
    });

    it('works for batches too', async () => {
      const body = {
        messages: [
          { to: '+905551111111', content: 'b1' },
          { to: '+905551111112', content: 'b2' },
        ],
      };
      const first = await keyed('batch-1', body, '/messages/batch');
      const before = await count();
      const repeat = await keyed('batch-1', body, '/messages/batch');
      expect(repeat.status).to.equal(201);
      expect(repeat.headers.get('idempotent-replayed')).to.equal('true');
      expect(repeat.body).to.deep.equal(first.body);
      expect(JSON.stringify(repeat.body)).to.equal(JSON.stringify(first.body));
      expect(await count()).to.equal(before);
    });

    it('answers 409 idempotency_key_reused for the same key with another body or path', async () => {
      await keyed('order-2', { to: '+905551111111', content: 'first' });
      const before = await count();
      const other = await keyed('order-2', { to: '+905551111111', content: 'second' });
      expect(other.status).to.equal(409);
      expect(other.body.error.code).to.equal('idempotency_key_reused');
      const otherPath = await keyed(
        'order-2',
        { messages: [{ to: '+905551111111', content: 'first' }] },
        '/messages/batch',
      );
      expect(otherPath.status).to.equal(409);
      expect(otherPath.body.error.code).to.equal('idempotency_key_reused');
      expect(await count()).to.equal(before);
    });

    it('answers 409 idempotency_key_in_use while a request with the key is in flight', async () => {
      const holder = await db().pool.connect();
      try {
        // What a request in flight holds: the key's transaction-scoped advisory lock.
        await holder.query('BEGIN');
        await holder.query(
          "SELECT pg_advisory_xact_lock(hashtextextended('idempotency:' || '' || ':' || 'busy-1', 0))",
        );
        const before = await count();
        const answer = await keyed('busy-1', { to: '+905551111111', content: 'x' });
        expect(answer.status).to.equal(409);
        expect(answer.body.error.code).to.equal('idempotency_key_in_use');
        expect(await count()).to.equal(before);
      } finally {
        await holder.query('ROLLBACK');
        holder.release();
      }
      expect((await keyed('busy-1', { to: '+905551111111', content: 'x' })).status).to.equal(201);
    });

    it('records nothing for a refused request, so the key stays usable', async () => {
      const bad = await keyed('order-3', { to: 'nope', content: 'x' });
      expect(bad.status).to.equal(400);
      const good = await keyed('order-3', { to: '+905551111111', content: 'x' });
      expect(good.status).to.equal(201);
      expect(good.headers.get('idempotent-replayed')).to.equal(null);
    });

    it('refuses an empty or over-long key with 400', async () => {
      for (const key of ['', 'k'.repeat(256)]) {
        const answer = await keyed(key, { to: '+905551111111', content: 'x' });
        expect(answer.status, `${key.length} characters`).to.equal(400);
        // The code docs/api.md and openapi.yaml name for it, on both intake routes.
        expect(answer.body.error.code, `${key.length} characters`).to.equal('invalid_idempotency_key');
        const batch = await keyed(key, { messages: [{ to: '+905551111111', content: 'x' }] }, '/messages/batch');
        expect(batch.body.error.code, `batch, ${key.length} characters`).to.equal('invalid_idempotency_key');
      }
      expect((await keyed('k'.repeat(255), { to: '+905551111111', content: 'x' })).status).to.equal(201);
    });

    it('refuses a key sent in two header lines with 400, storing nothing', async () => {
      const before = await count();
      // Two `Idempotency-Key` lines (a client or proxy that added it twice); Node would join them into `a, b`.
      const answer = await new Promise<{ status: number; body: string }>((resolve, reject) => {
        const request = httpRequest(
          `${service.url}/messages`,
          {
            method: 'POST',
            headers: { 'content-type': 'application/json', 'idempotency-key': ['twice-a', 'twice-b'] },
          },
          (response) => {
            let body = '';
            response.setEncoding('utf8');
            response.on('data', (chunk) => {
              body += chunk;
            });
            response.on('end', () => resolve({ status: response.statusCode ?? 0, body }));
          },
        );
        request.on('error', reject);
        request.end(JSON.stringify({ to: '+905551111111', content: 'x' }));
      });
      expect(answer.status).to.equal(400);
      expect(JSON.parse(answer.body).error).to.deep.include({
        code: 'invalid_idempotency_key',
        message: 'Idempotency-Key must be sent once',
      });
      expect(await count()).to.equal(before);
      // The joined value was never stored as a key: sent once, it is a fresh key.
      expect(
        (await keyed('twice-a, twice-b', { to: '+905551111111', content: 'x' })).headers.get('idempotent-replayed'),
      ).to.equal(null);
    });

    it('forgets keys after 24 hours and the maintenance pass purges them in batches', async () => {
      const first = await keyed('old-1', { to: '+905551111111', content: 'x' });
      await db().pool.query(
        "UPDATE idempotency_keys SET created_at = now() - interval '25 hours' WHERE idempotency_key = 'old-1'",
      );
      const again = await keyed('old-1', { to: '+905551111111', content: 'different now' });
      expect(again.status).to.equal(201);
      expect(again.body.id).to.not.equal(first.body.id);

      await db().pool.query(
        `INSERT INTO idempotency_keys (scope, idempotency_key, request_hash, response_status, response_body, created_at)
         SELECT '', 'expired-' || i, 'h', 201, '{}', now() - interval '2 days' FROM generate_series(1, 2300) AS i`,
      );
      const pass = await runMaintenancePass({ pool: db().pool, owner: 'test', logger: silentLogger() }, 0);
      expect(pass).to.deep.equal({ ran: true, removed: { messages: 0, idempotency_keys: 2300 } });
      const left = await db().pool.query(
        "SELECT count(*)::int AS n FROM idempotency_keys WHERE idempotency_key LIKE 'expired-%'",
      );
      expect(left.rows[0].n).to.equal(0);
      const kept = await db().pool.query(
        "SELECT count(*)::int AS n FROM idempotency_keys WHERE idempotency_key = 'old-1'",
      );
      expect(kept.rows[0].n).to.equal(1);
    });
  });
});

describe('idempotency keys across services and API keys', () => {
  const db = useTestDatabase();
  let a: TestService;
  let b: TestService;
  before(async () => {
    const settings = { FETCH_INTERVAL_MS: '60000', API_KEYS: 'key-one,key-two' };
    a = await startTestService(db().url, settings);
    b = await startTestService(db().url, settings);
    await api(a.url, 'PUT', '/jobs/stop', undefined, { 'X-API-Key': 'key-one' });
  });
  after(async () => {
    await a.stop();
    await b.stop();
  });
  const rows = async (content: string) =>
    Number((await db().pool.query('SELECT count(*) AS n FROM messages WHERE content = $1', [content])).rows[0].n);

  it('scopes keys per API key', async () => {
    const body = { to: '+905551111111', content: 'scoped' };
    const one = await api(a.url, 'POST', '/messages', body, { 'X-API-Key': 'key-one', 'Idempotency-Key': 'same' });
    const two = await api(a.url, 'POST', '/messages', body, {
      authorization: 'Bearer key-two',
      'Idempotency-Key': 'same',
    });
    expect([one.status, two.status]).to.deep.equal([201, 201]);
    expect(two.headers.get('idempotent-replayed')).to.equal(null);
    expect(await rows('scoped')).to.equal(2);
    const replay = await api(b.url, 'POST', '/messages', body, {
      authorization: 'Bearer key-one',
      'Idempotency-Key': 'same',
    });
    expect(replay.headers.get('idempotent-replayed')).to.equal('true');
    expect(replay.body.id).to.equal(one.body.id);
  });

  it('stores one message when two services get the same key at the same moment (30 rounds)', async function () {
    this.timeout(60_000);
    for (let round = 0; round < 30; round += 1) {
      const content = `race ${round}`;
      const headers = { 'X-API-Key': 'key-one', 'Idempotency-Key': `race-${round}` };
      const answers = await Promise.all(
        [a, b, a, b].map((service) => api(service.url, 'POST', '/messages', { to: '+905551111111', content }, headers)),
      );
      expect(await rows(content), `round ${round}`).to.equal(1);
      const created = answers.filter((answer) => answer.status === 201);
      expect(created.length, `round ${round}`).to.be.at.least(1);
      expect(new Set(created.map((answer) => answer.body.id)).size).to.equal(1);
      for (const answer of answers.filter((answer) => answer.status !== 201)) {
        expect(answer.status).to.equal(409);
        expect(answer.body.error.code).to.equal('idempotency_key_in_use');
      }
    }
  });
});
