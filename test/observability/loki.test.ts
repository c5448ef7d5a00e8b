import type { IncomingHttpHeaders } from 'node:http';
import { Writable } from 'node:stream';
import { Worker } from 'node:worker_threads';
import { expect } from 'chai';
import { logRedactionPaths } from '../../src/config/settings.ts';
import { closeLogger, createLogger } from '../../src/observability/logger.ts';

interface Push {
  path: string;
  headers: IncomingHttpHeaders;
  body: { streams: Array<{ stream: Record<string, unknown>; values: Array<[string, string]> }> };
}

/**
 * A local Loki push endpoint that records what it receives. It runs in a
 * worker thread: closing a pino transport blocks the main thread until the
 * transport's last push is answered, so an in-thread receiver would deadlock.
 */
const receiverSource = `
const { createServer } = require('node:http');
const { parentPort } = require('node:worker_threads');
const server = createServer(async (req, res) => {
  const chunks = [];
  for await (const chunk of req) chunks.push(chunk);
  if (req.method !== 'POST' || req.url !== '/loki/api/v1/push') return res.writeHead(404).end();
  parentPort.postMessage({ type: 'push', push: {
    path: req.url, headers: req.headers, body: JSON.parse(Buffer.concat(chunks).toString('utf8')) } });
  res.writeHead(204).end(); // what Loki answers
});
server.listen(0, '127.0.0.1', () => parentPort.postMessage({ type: 'listening', port: server.address().port }));
`;

async function startLokiReceiver(): Promise<{ url: string; pushes: Push[]; stop(): Promise<void> }> {
  const pushes: Push[] = [];
  const worker = new Worker(receiverSource, { eval: true });
  const port = await new Promise<number>((resolve, reject) => {
    worker.once('error', reject);
    worker.on('message', (message: { type: string; port?: number; push?: Push }) => {
      if (message.type === 'listening') resolve(message.port!);
      else if (message.type === 'push') pushes.push(message.push!);
    });
  });
  return { url: `http://127.0.0.1:${port}`, pushes, stop: async () => void (await worker.terminate()) };
}

/** Pushes reach the main thread as worker messages: give them a moment. */
async function arrived(pushes: Push[], count = 1): Promise<Push[]> {
  const deadline = Date.now() + 5_000;
  while (pushes.length < count && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20));
  return pushes;
}

function memoryDestination() {
  const lines: string[] = [];
  const stream = new Writable({
    write(chunk, _encoding, done) {
      lines.push(String(chunk));
      done();
    },
  });
  return { lines, stream };
}

function entries(pushes: Push[]) {
  return pushes.flatMap((push) =>
    push.body.streams.flatMap(({ stream, values }) =>
      values.map(([timestamp, line]) => ({ labels: stream, timestamp, record: JSON.parse(line), line })),
    ),
  );
}

describe('Loki log shipping (pino-loki)', () => {
  let receiver: Awaited<ReturnType<typeof startLokiReceiver>>;

  beforeEach(async () => {
    receiver = await startLokiReceiver();
  });

  afterEach(async () => {
    await receiver.stop();
  });

  it('pushes each line with labels app, instance and level, without redacted secrets', async () => {
    const stdout = memoryDestination();
    const logger = createLogger({
      level: 'info',
      instanceId: 'pod-a',
      lokiUrl: receiver.url,
      destination: stdout.stream,
      // As main.ts does: the secret settings' paths, derived from the settings table.
      redact: logRedactionPaths(),
    });
    const before = Date.now();
    logger.info(
      { jobId: 'job-1', token: 'tok-3f9a-secret', config: { webhook: { authValue: 'auth-77c1-secret' } } },
      'run started',
    );
    logger.warn({ messageId: 'm-1' }, 'webhook slow');
    logger.debug('below the level, not shipped');
    await closeLogger(logger);

    const shipped = entries(await arrived(receiver.pushes));
    expect(shipped.map((entry) => entry.record.msg)).to.deep.equal(['run started', 'webhook slow']);
    const [info, warn] = shipped;
    expect(info!.labels).to.deep.equal({ app: 'job-manager', instance: 'pod-a', level: 'info' });
    expect(warn!.labels).to.deep.equal({ app: 'job-manager', instance: 'pod-a', level: 'warn' });
    for (const labels of shipped.map((entry) => entry.labels)) {
      for (const value of Object.values(labels)) expect(value).to.be.a('string'); // Loki rejects other types
    }
    // Nanosecond timestamps taken from the line's own time.
    expect(info!.timestamp).to.match(/^\d{19}$/);
    const ms = Number(BigInt(info!.timestamp) / 1_000_000n);
    expect(ms).to.be.within(before - 1_000, Date.now());
    expect(info!.record).to.include({ jobId: 'job-1', app: 'job-manager', instance: 'pod-a' });
    expect(info!.record.token).to.equal('[redacted]');

    const everything = JSON.stringify(receiver.pushes) + stdout.lines.join('');
    expect(everything).not.to.include('tok-3f9a-secret');
    expect(everything).not.to.include('auth-77c1-secret');

    // stdout keeps its format: level names and ISO time.
    const first = JSON.parse(stdout.lines[0]!);
    expect(first).to.include({ level: 'info', msg: 'run started' });
    expect(first.time).to.match(/^\d{4}-\d\d-\d\dT/);
  });

  it('ships debug lines once LOG_LEVEL is lowered while running', async () => {
    const logger = createLogger({
      level: 'info',
      instanceId: 'pod-b',
      lokiUrl: receiver.url,
      destination: memoryDestination().stream,
    });
    logger.debug('not yet');
    logger.level = 'debug'; // what followLogLevel does for a live LOG_LEVEL change
    logger.child({ runId: 'r-9' }).debug('now visible');
    await closeLogger(logger);
    const shipped = entries(await arrived(receiver.pushes));
    expect(shipped.map((entry) => entry.record.msg)).to.deep.equal(['now visible']);
    expect(shipped[0]!.labels.level).to.equal('debug');
    expect(shipped[0]!.record.runId).to.equal('r-9');
  });

  it('pushes on its batch interval without waiting for close', async () => {
    const logger = createLogger({
      level: 'info',
      instanceId: 'pod-c',
      lokiUrl: receiver.url,
      destination: memoryDestination().stream,
    });
    logger.error({ err: new Error('boom') }, 'run failed');
    expect(entries(await arrived(receiver.pushes))[0]?.labels.level).to.equal('error');
    await closeLogger(logger);
  });

  it('turns credentials in LOKI_URL into basic auth', async () => {
    const url = new URL(receiver.url);
    url.username = 'loki-user';
    url.password = 'p@ss-9d2e';
    const logger = createLogger({
      level: 'info',
      instanceId: 'pod-d',
      lokiUrl: url.toString(),
      destination: memoryDestination().stream,
    });
    logger.info('hello');
    await closeLogger(logger);
    expect(await arrived(receiver.pushes)).to.have.length(1);
    expect(receiver.pushes[0]!.headers.authorization).to.equal(
      `Basic ${Buffer.from('loki-user:p@ss-9d2e').toString('base64')}`,
    );
  });
});
