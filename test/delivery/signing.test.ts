import { randomBytes } from 'node:crypto';
import { expect } from 'chai';
import { Webhook } from 'standardwebhooks';
import { ConfigError, resolveConfig } from '../../src/config/config.ts';
import { createWebhookSigner, parseSigningSecrets } from '../../src/delivery/signing.ts';
import { createWebhookClient } from '../../src/delivery/webhook.ts';
import { type RunningSink, startSink } from '../../src/sink/server.ts';

const newSecret = () => `whsec_${randomBytes(32).toString('base64')}`;

/** Signed deliveries, checked the way a receiver checks them: with the npm `standardwebhooks` library. */
describe('Standard Webhooks signing', () => {
  let sink: RunningSink;
  before(async () => {
    sink = await startSink();
  });
  after(() => sink.close());
  beforeEach(() => sink.clear());

  const headersOf = (item: { webhook: { id: string; timestamp: string; signature: string } | null }) => ({
    'webhook-id': item.webhook!.id,
    'webhook-timestamp': item.webhook!.timestamp,
    'webhook-signature': item.webhook!.signature,
  });

  it('signs every delivery so a receiver with either of two rotated secrets verifies it, and a wrong one does not', async () => {
    const [oldSecret, newSecretValue] = [newSecret(), newSecret()];
    const client = createWebhookClient({
      url: `${sink.url}/webhook`,
      timeoutMs: 5_000,
      signer: createWebhookSigner([newSecretValue, oldSecret]),
    });
    try {
      const result = await client.deliver({ id: 'msg-1', to: '+905551111111', content: 'Hello ✓' });
      expect(result.outcome).to.equal('sent');
    } finally {
      await client.close();
    }
    const [item] = sink.received().items;
    expect(item!.webhook!.id).to.equal('msg-1');
    expect(Number(item!.webhook!.timestamp)).to.be.closeTo(Date.now() / 1000, 10);
    expect(item!.webhook!.signature.split(' ')).to.have.length(2);
    for (const secret of [oldSecret, newSecretValue]) {
      const payload = new Webhook(secret).verify(item!.body!, headersOf(item!));
      expect(payload).to.deep.equal({ to: '+905551111111', content: 'Hello ✓' });
    }
    expect(() => new Webhook(newSecret()).verify(item!.body!, headersOf(item!))).to.throw(/signature/i);
    // A tampered body fails even with the right secret.
    expect(() => new Webhook(oldSecret).verify(item!.body!.replace('Hello', 'Hallo'), headersOf(item!))).to.throw();
  });

  it('keeps webhook-id (the message id) the same on every attempt', async () => {
    const secret = newSecret();
    const client = createWebhookClient({
      url: `${sink.url}/webhook`,
      timeoutMs: 5_000,
      signer: createWebhookSigner([secret]),
    });
    try {
      sink.configure({ statusCode: 503 });
      expect((await client.deliver({ id: 'msg-2', to: '+905551111111', content: 'x' })).outcome).to.equal('transient');
      sink.configure({ statusCode: undefined });
      expect((await client.deliver({ id: 'msg-2', to: '+905551111111', content: 'x' })).outcome).to.equal('sent');
    } finally {
      await client.close();
    }
    const items = sink.received().items;
    expect(items.map((item) => item.webhook!.id)).to.deep.equal(['msg-2', 'msg-2']);
    for (const item of items) expect(() => new Webhook(secret).verify(item.body!, headersOf(item))).to.not.throw();
  });

  it('sends no signature headers without secrets', async () => {
    const client = createWebhookClient({ url: `${sink.url}/webhook`, timeoutMs: 5_000 });
    try {
      await client.deliver({ id: 'msg-3', to: '+905551111111', content: 'x' });
    } finally {
      await client.close();
    }
    expect(sink.received().items[0]!.webhook).to.equal(null);
  });

  it('refuses malformed secrets at start-up, naming the key and never the value', () => {
    for (const value of ['not-a-secret', 'whsec_', 'whsec_%%%%', `${newSecret()} whsec_abc`]) {
      let error: unknown;
      try {
        resolveConfig({ WEBHOOK_SIGNING_SECRET: value });
      } catch (caught) {
        error = caught;
      }
      expect(error, value).to.be.instanceOf(ConfigError);
      expect((error as ConfigError).key).to.equal('WEBHOOK_SIGNING_SECRET');
      // ("whsec_" alone is the format's own prefix, which the message names.)
      if (value !== 'whsec_') expect((error as Error).message).to.not.include(value);
    }
    const two = `${newSecret()} ${newSecret()}`;
    expect(resolveConfig({ WEBHOOK_SIGNING_SECRET: two }).webhook.signingSecrets).to.deep.equal(two.split(' '));
    expect(() => parseSigningSecrets('whsec_abc')).to.throw(/secret 1 of 1/);
  });
});
