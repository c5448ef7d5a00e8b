/**
 * Standard Webhooks signatures on outbound deliveries
 * (https://www.standardwebhooks.com). Signing is done by the npm
 * `standardwebhooks` library, the same one receivers verify with:
 *
 *   webhook-id:        the message id (the same on every attempt)
 *   webhook-timestamp: unix seconds of this attempt
 *   webhook-signature: "v1,<base64 HMAC-SHA256 of id.timestamp.body>", one
 *                      per configured secret, space-separated (rotation: a
 *                      receiver that knows either secret accepts the request)
 */
import { Webhook } from 'standardwebhooks';

export interface WebhookSigner {
  /** The three headers for one attempt of message `id` with exactly this `body`, signed at `at`. */
  headers(id: string, body: string, at?: Date): Record<string, string>;
}

/** `whsec_` and standard base64 of at least one byte. */
const secretFormat = /^whsec_(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=|[A-Za-z0-9+/]{4})$/;

/**
 * Splits WEBHOOK_SIGNING_SECRET (space-separated `whsec_<base64>` secrets).
 * @throws Error saying which secret (by position, never its value) is malformed
 */
export function parseSigningSecrets(value: string): string[] {
  const secrets = value.split(/\s+/).filter(Boolean);
  if (secrets.length === 0) throw new Error('must hold at least one whsec_<base64> secret');
  for (const [index, secret] of secrets.entries()) {
    if (!secretFormat.test(secret)) {
      throw new Error(`secret ${index + 1} of ${secrets.length} is not "whsec_" followed by base64`);
    }
  }
  return secrets;
}

/**
 * A signer for one or more secrets, newest first or in any order: every
 * secret signs, so receivers can rotate at their own pace.
 * @throws Error on a malformed secret (see parseSigningSecrets)
 */
export function createWebhookSigner(secrets: string[]): WebhookSigner {
  const webhooks = secrets.map((secret) => {
    parseSigningSecrets(secret);
    return new Webhook(secret);
  });
  return {
    headers(id, body, at = new Date()) {
      const timestamp = new Date(Math.floor(at.getTime() / 1000) * 1000);
      return {
        'webhook-id': id,
        'webhook-timestamp': String(timestamp.getTime() / 1000),
        'webhook-signature': webhooks.map((webhook) => webhook.sign(id, timestamp, body)).join(' '),
      };
    },
  };
}
