import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';

/** What the receiver does with one delivery. */
export type Reply =
  | { kind: 'accept' }
  | { kind: 'status'; status: number; headers?: Record<string, string> }
  /** Never answers (the connection stays open until the client gives up). */
  | { kind: 'hang' };

export interface Delivery {
  key: string;
  at: number;
  status: number | 'hung';
}

/**
 * The recording webhook of the fault suite: answers each POST as `policy`
 * says (after `latencyMs`), records every one, and counts the accepted ones
 * by Idempotency-Key.
 */
export class Receiver {
  policy: (key: string) => Reply = () => ({ kind: 'accept' });
  latencyMs = 0;
  /** Requests that reached the receiver (counted before any latency): those in flight included. */
  arrived = 0;
  readonly deliveries: Delivery[] = [];
  readonly #accepted = new Map<string, number>();
  /** Bumped by reset(): a reply still sleeping from an earlier scenario is not recorded in the next. */
  #generation = 0;
  readonly #server = createServer((request, response) => void this.#handle(request, response));
  port = 0;

  async start(): Promise<this> {
    await new Promise<void>((resolve) => this.#server.listen(0, '127.0.0.1', resolve));
    this.port = (this.#server.address() as AddressInfo).port;
    return this;
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}/webhook`;
  }

  /** Keys accepted at least once. */
  get accepted(): number {
    return this.#accepted.size;
  }

  acceptedCount(key: string): number {
    return this.#accepted.get(key) ?? 0;
  }

  /** Keys accepted more than once. */
  duplicates(): string[] {
    return [...this.#accepted].filter(([, count]) => count > 1).map(([key]) => key);
  }

  acceptedKeys(): string[] {
    return [...this.#accepted.keys()];
  }

  /** Time of the first accepted delivery at or after `since` (epoch ms). */
  firstAcceptedAfter(since: number): number | undefined {
    return this.deliveries.find((delivery) => delivery.at >= since && delivery.status === 202)?.at;
  }

  reset(): void {
    this.#generation += 1;
    this.deliveries.length = 0;
    this.arrived = 0;
    this.#accepted.clear();
    this.policy = () => ({ kind: 'accept' });
    this.latencyMs = 0;
  }

  async close(): Promise<void> {
    this.#server.closeAllConnections();
    await new Promise((resolve) => this.#server.close(resolve));
  }

  async #handle(request: IncomingMessage, response: ServerResponse): Promise<void> {
    for await (const _chunk of request) {
      // drain the body
    }
    const key = String(request.headers['idempotency-key'] ?? '');
    const generation = this.#generation;
    this.arrived += 1;
    const reply = this.policy(key);
    if (reply.kind === 'hang') {
      this.deliveries.push({ key, at: Date.now(), status: 'hung' });
      return; // the client's timeout ends it
    }
    if (this.latencyMs > 0) await sleep(this.latencyMs);
    if (generation !== this.#generation) {
      response.destroy();
      return;
    }
    if (reply.kind === 'status') {
      this.deliveries.push({ key, at: Date.now(), status: reply.status });
      response.writeHead(reply.status, { 'content-type': 'application/json', ...reply.headers });
      response.end(JSON.stringify({ message: 'injected' }));
      return;
    }
    this.deliveries.push({ key, at: Date.now(), status: 202 });
    this.#accepted.set(key, (this.#accepted.get(key) ?? 0) + 1);
    response.writeHead(202, { 'content-type': 'application/json' });
    response.end(JSON.stringify({ message: 'Accepted', messageId: `ext-${key}` }));
  }
}
