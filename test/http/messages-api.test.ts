import { expect } from 'chai';
import { useTestDatabase } from '../support/postgres.ts';
import { api, startTestService, type TestService } from '../support/service.ts';

describe('messages API over HTTP', () => {
  const db = useTestDatabase();
  let service: TestService;
  before(async () => {
    service = await startTestService(db().url, { FETCH_INTERVAL_MS: '60000' });
    await api(service.url, 'PUT', '/jobs/stop'); // nothing sends while we look
  });
  after(() => service.stop());
  const call = (method: string, path: string, body?: unknown) => api(service.url, method, path, body);
  const count = async () => Number((await db().pool.query('SELECT count(*) AS n FROM messages')).rows[0].n);

  it('accepts a message and shows it pending', async () => {
    const created = await call('POST', '/messages', { to: '+905551111111', content: 'Hello 👋' });
    expect(created.status).to.equal(201);
    expect(created.body).to.include({ to: '+905551111111', content: 'Hello 👋', status: 'pending', attempts: 0 });
    expect(created.body).to.include({ externalMessageId: null, lastError: null, sentAt: null });
    const fetched = await call('GET', `/messages/${created.body.id}`);
    expect(fetched.body).to.deep.equal(created.body);
  });

  it('counts content in code points: 160 emoji fit, 161 letters do not', async () => {
    expect((await call('POST', '/messages', { to: '+905551111111', content: '😀'.repeat(160) })).status).to.equal(201);
    const tooLong = await call('POST', '/messages', { to: '+905551111111', content: 'a'.repeat(161) });
    expect(tooLong.status).to.equal(400);
    expect(tooLong.body.error.message).to.match(/content must be 1 to 160 characters \(got 161\)/);
  });

  it('refuses bad input with a message naming the field, storing nothing', async () => {
    const before = await count();
    const cases: Array<[unknown, RegExp]> = [
      [{ to: '905551111111', content: 'x' }, /\bto\b/],
      [{ to: '+0123456789', content: 'x' }, /\bto\b/],
      [{ to: '+1234567', content: 'x' }, /\bto\b/],
      [{ to: '+905551111111', content: '' }, /content/],
      [{ to: '+905551111111', content: 'bell\u0007' }, /control characters/],
      [{ to: '+905551111111' }, /content/],
      [{ to: '+905551111111', content: 'x', extra: 1 }, /extra|additional/i],
    ];
    for (const [body, pattern] of cases) {
      const answer = await call('POST', '/messages', body);
      expect(answer.status, JSON.stringify(body)).to.equal(400);
      expect(answer.body.error.message, JSON.stringify(body)).to.match(pattern);
    }
    expect((await call('POST', '/messages', { to: '+905551111111', content: 'line one\nline two' })).status).to.equal(
      201,
    );
    expect(await count()).to.equal(before + 1);
  });

  it('stores a batch all or nothing, in order, and names the bad index', async () => {
    const before = await count();
    const bad = await call('POST', '/messages/batch', {
      messages: [
        { to: '+905551111111', content: 'ok' },
        { to: '+905551111112', content: 'ok' },
        { to: 'nope', content: 'bad' },
      ],
    });
    expect(bad.status).to.equal(400);
    expect(bad.body.error.message).to.match(/messages\[2\]\.to/);
    expect(await count()).to.equal(before);
    const messages = Array.from({ length: 1000 }, (_, index) => ({ to: '+905551111111', content: `message ${index}` }));
    const good = await call('POST', '/messages/batch', { messages });
    expect(good.status).to.equal(201);
    expect(good.body.items.map((item: { content: string }) => item.content)).to.deep.equal(
      messages.map((m) => m.content),
    );
    expect(await count()).to.equal(before + 1000);
    const tooMany = await call('POST', '/messages/batch', { messages: [...messages, messages[0]] });
    expect(tooMany.status).to.equal(400);
    expect((await call('POST', '/messages/batch', { messages: [] })).status).to.equal(400);
  });

  it('404s an unknown or malformed message id', async () => {
    expect((await call('GET', '/messages/00000000-0000-4000-8000-000000000000')).status).to.equal(404);
    expect((await call('GET', '/messages/not-a-uuid')).status).to.be.oneOf([400, 404]);
  });

  it('pages through sent messages newest first with a stable cursor', async () => {
    // Mark 45 messages sent with distinct times, some sharing a timestamp to exercise the id tiebreak.
    await db().pool.query(`
      UPDATE messages SET status = 'sent', external_message_id = 'ext-' || id,
             sent_at = timestamptz '2026-01-01T00:00:00Z' + (n / 2) * interval '1 microsecond'
      FROM (SELECT id AS mid, row_number() OVER (ORDER BY created_at, id) AS n FROM messages LIMIT 45) AS picked
      WHERE messages.id = picked.mid`);
    const expected = (
      await db().pool.query("SELECT id FROM messages WHERE status = 'sent' ORDER BY sent_at DESC, id DESC")
    ).rows.map((row) => row.id);
    const seen: string[] = [];
    let cursor: string | null = null;
    let pages = 0;
    do {
      const page: any = await call('GET', `/messages/sent?limit=20${cursor ? `&cursor=${cursor}` : ''}`);
      expect(page.status).to.equal(200);
      seen.push(...page.body.items.map((item: { id: string }) => item.id));
      cursor = page.body.nextCursor;
      pages += 1;
      // A message sent while we page does not shift what comes next.
      if (pages === 1) await call('POST', '/messages', { to: '+905551111111', content: 'new' });
    } while (cursor && pages < 10);
    expect(seen).to.deep.equal(expected);
    expect(pages).to.equal(3);
    const defaultPage = await call('GET', '/messages/sent');
    expect(defaultPage.body.items).to.have.length(20);
  });

  it('refuses a forged cursor and an out-of-range limit', async () => {
    expect((await call('GET', '/messages/sent?cursor=garbage')).body.error.code).to.equal('invalid_cursor');
    expect((await call('GET', '/messages/sent?limit=0')).status).to.equal(400);
    expect((await call('GET', '/messages/sent?limit=101')).status).to.equal(400);
  });

  it('lists messages by status for operators', async () => {
    const pending = await call('GET', '/messages?status=pending&limit=5');
    expect(pending.status).to.equal(200);
    expect(pending.body.items).to.have.length(5);
    expect(pending.body.items.every((item: { status: string }) => item.status === 'pending')).to.equal(true);
    expect(pending.body.nextCursor).to.be.a('string');
    expect((await call('GET', '/messages?status=lost')).status).to.equal(400);
  });
});

describe('message intake rate limit', () => {
  const db = useTestDatabase();
  let service: TestService;
  before(async () => {
    service = await startTestService(db().url, {
      RATE_LIMIT_PER_MINUTE: '3',
      API_KEYS: 'client-a,client-b',
      FETCH_INTERVAL_MS: '60000',
    });
  });
  after(() => service.stop());

  it('answers 429 with Retry-After past the limit, per client, storing nothing more', async () => {
    const post = (key: string) =>
      api(service.url, 'POST', '/messages', { to: '+905551111111', content: 'hi' }, { 'x-api-key': key });
    const answers = [];
    for (let i = 0; i < 4; i += 1) answers.push(await post('client-a'));
    expect(answers.map((answer) => answer.status)).to.deep.equal([201, 201, 201, 429]);
    const limited = answers[3]!;
    expect(limited.body.error.code).to.equal('rate_limited');
    expect(Number(limited.headers.get('retry-after'))).to.be.within(1, 60);
    expect((await post('client-b')).status, 'another client has its own budget').to.equal(201);
    const read = await api(service.url, 'GET', '/jobs', undefined, { 'x-api-key': 'client-a' });
    expect(read.status, 'reads are not limited').to.equal(200);
    const stranger = await api(service.url, 'POST', '/messages', { to: '+905551111111', content: 'hi' });
    expect(stranger.status, 'no key, no entry').to.equal(401);
    const { rows } = await db().pool.query('SELECT count(*)::int AS n FROM messages');
    expect(rows[0].n).to.equal(4);
  });
});
