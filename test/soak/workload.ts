import { setTimeout as sleep } from 'node:timers/promises';
import type { History, IntakeRecord, Outcome } from './history.ts';
import type { Prng } from './prng.ts';
import type { Rig } from './rig.ts';

/**
 * The client side: about `rate` messages a second offered to random running
 * pods (a frozen one included: clients do not know), mixing single and batch
 * intake (half of them with an Idempotency-Key), replays of earlier keyed
 * requests with the same key and body, cancels of recent messages, retries of
 * cancelled ones, "retry failed", and stops and starts of the seeded job.
 * Every request and its answer (or "maybe") goes into the history.
 */
export class Workload {
  readonly #rig: Rig;
  readonly #history: History;
  readonly #random: Prng;
  readonly #rate: number;
  readonly #seed: number;
  #sequence = 0;
  #inFlight = 0;
  #stopped = false;
  /** Ids answered to the workload, newest last (for cancels). */
  readonly #recent: string[] = [];
  readonly #cancelled: string[] = [];
  readonly #keyed: number[] = [];

  constructor(rig: Rig, history: History, random: Prng, rate: number, seed: number) {
    this.#rig = rig;
    this.#history = history;
    this.#random = random;
    this.#rate = rate;
    this.#seed = seed;
  }

  /** Runs until stop(); resolves once every request it made has been answered or given up. */
  async run(): Promise<void> {
    // About 2.25 messages per operation with the mix below; the factor 2 makes up for the ops skipped (no message yet to cancel, replay or retry).
    const pauseMs = 1000 / (this.#rate / 2);
    let next = Date.now();
    while (!this.#stopped) {
      if (this.#inFlight < 40) void this.#operation();
      next += pauseMs;
      await sleep(Math.max(0, next - Date.now()));
    }
    while (this.#inFlight > 0) await sleep(50);
  }

  stop(): void {
    this.#stopped = true;
  }

  async #operation(): Promise<void> {
    const pods = this.#rig.runningPods();
    if (pods.length === 0) return;
    const { url, name } = this.#random.pick(pods);
    const roll = this.#random.next();
    this.#inFlight += 1;
    try {
      if (roll < 0.55) await this.#intake(url, name, 1);
      else if (roll < 0.75) await this.#intake(url, name, this.#random.int(2, 15));
      else if (roll < 0.85) await this.#replay(url, name);
      else if (roll < 0.93) await this.#cancel(url, name);
      else if (roll < 0.97) await this.#retry(url, name);
      else if (roll < 0.99) await this.#action(url, name, 'retry-failed', 'POST', '/messages/retry-failed', '-');
      else await this.#toggleJob(url, name);
    } finally {
      this.#inFlight -= 1;
    }
  }

  async #intake(url: string, pod: string, count: number): Promise<void> {
    const contents = Array.from({ length: count }, () => this.#nextContent());
    const key = this.#random.chance(0.5) ? `soak-${this.#seed}-${this.#sequence}` : undefined;
    const at = Date.now();
    const answer = await post(url, path(count), body(contents), key);
    const record: IntakeRecord = { at, end: Date.now(), pod, key, contents, ...this.#read(answer, count) };
    this.#note(record, `POST ${path(count)}`, answer);
    const index = this.#history.intake(record);
    if (key) this.#keyed.push(index);
  }

  /** Unique per message: the checker finds a message whose intake answer was lost by its content. */
  #nextContent(): string {
    this.#sequence += 1;
    return `soak ${this.#seed} #${this.#sequence}`;
  }

  async #replay(url: string, pod: string): Promise<void> {
    if (this.#keyed.length === 0) return;
    const replayOf = this.#random.pick(this.#keyed);
    const original = this.#history.intakes[replayOf]!;
    const count = original.contents.length;
    const at = Date.now();
    const answer = await post(url, path(count), body(original.contents), original.key);
    const record: IntakeRecord = {
      at,
      end: Date.now(),
      pod,
      key: original.key,
      contents: original.contents,
      replayOf,
      ...this.#read(answer, count),
    };
    this.#note(record, `POST ${path(count)} (replay)`, answer);
    this.#history.intake(record);
  }

  async #cancel(url: string, pod: string): Promise<void> {
    if (this.#recent.length === 0) return;
    const id = this.#random.pick(this.#recent.slice(-300));
    const status = await this.#action(url, pod, 'cancel', 'POST', `/messages/${id}/cancel`, id);
    if (status === 200) this.#cancelled.push(id);
  }

  async #retry(url: string, pod: string): Promise<void> {
    if (this.#cancelled.length === 0) return;
    const id = this.#random.pick(this.#cancelled.slice(-100));
    await this.#action(url, pod, 'retry', 'POST', `/messages/${id}/retry`, id);
  }

  async #toggleJob(url: string, pod: string): Promise<void> {
    const start = this.#random.chance(0.5);
    const kind = start ? 'job-start' : 'job-stop';
    await this.#action(url, pod, kind, 'PUT', start ? '/jobs/start' : '/jobs/stop', 'message-sender', {
      name: 'message-sender',
    });
  }

  async #action(
    url: string,
    pod: string,
    kind: 'cancel' | 'retry' | 'retry-failed' | 'job-start' | 'job-stop',
    method: string,
    route: string,
    target: string,
    payload: unknown = {},
  ): Promise<number> {
    const at = Date.now();
    const answer = await call(url, method, route, payload);
    const outcome: Outcome = answer.status === 0 ? 'maybe' : answer.status === 200 ? 'ok' : 'fail';
    const messageStatus = typeof answer.body?.status === 'string' ? answer.body.status : undefined;
    this.#history.action({ at, end: Date.now(), pod, kind, target, status: answer.status, outcome, messageStatus });
    this.#serverError(pod, `${method} ${route}`, answer);
    return answer.status;
  }

  #read(answer: Answer, count: number): Pick<IntakeRecord, 'status' | 'outcome' | 'ids'> {
    if (answer.status === 201) {
      const items: Array<{ id: string }> = count === 1 ? [answer.body] : (answer.body?.items ?? []);
      const ids = items.map((item) => item.id);
      this.#recent.push(...ids);
      if (this.#recent.length > 2_000) this.#recent.splice(0, 1_000);
      return { status: 201, outcome: 'ok', ids };
    }
    return { status: answer.status, outcome: answer.status === 0 ? 'maybe' : 'fail', ids: [] };
  }

  #note(record: IntakeRecord, request: string, answer: Answer): void {
    this.#serverError(record.pod, request, answer);
  }

  #serverError(pod: string, request: string, answer: Answer): void {
    if (answer.status >= 500 && answer.status !== 503)
      this.#history.serverError({
        at: Date.now(),
        pod,
        request,
        status: answer.status,
        body: JSON.stringify(answer.body).slice(0, 500),
      });
  }
}

interface Answer {
  status: number;
  body: any;
}

function path(count: number): string {
  return count === 1 ? '/messages' : '/messages/batch';
}

function body(contents: string[]): unknown {
  const messages = contents.map((content) => ({ to: '+905551111111', content }));
  return messages.length === 1 ? messages[0] : { messages };
}

function post(url: string, route: string, payload: unknown, key: string | undefined): Promise<Answer> {
  return call(url, 'POST', route, payload, key ? { 'idempotency-key': key } : {});
}

/** One request with a 5 s bound; status 0 when there was no answer (the outcome is unknown). */
async function call(
  url: string,
  method: string,
  route: string,
  payload: unknown,
  headers: Record<string, string> = {},
): Promise<Answer> {
  try {
    const response = await fetch(`${url}${route}`, {
      method,
      headers: { 'content-type': 'application/json', ...headers },
      body: JSON.stringify(payload),
      signal: AbortSignal.timeout(5_000),
    });
    const text = await response.text();
    let parsed: any;
    try {
      parsed = text ? JSON.parse(text) : undefined;
    } catch {
      parsed = text;
    }
    return { status: response.status, body: parsed };
  } catch {
    return { status: 0, body: undefined };
  }
}
