/**
 * The history of one soak: every request the workload made and what came back
 * (an answer, or "maybe" when it timed out or the connection broke: the
 * request may or may not have taken effect), every fault the nemesis injected
 * (from when to when), the job's run count over time, and pod starts that
 * failed. The checker reads only this, the receiver's record and the final
 * database. Times are epoch milliseconds.
 */
export type Outcome = 'ok' | 'fail' | 'maybe';

export interface IntakeRecord {
  at: number;
  end: number;
  pod: string;
  /** The Idempotency-Key, when one was sent. */
  key?: string;
  /** Each message's content: unique per message, so an unknown outcome is resolved from the database. */
  contents: string[];
  status: number;
  outcome: Outcome;
  /** Ids answered, in request order (ok only). */
  ids: string[];
  /** A replay of an earlier request (same key and body). */
  replayOf?: number;
}

export interface ActionRecord {
  at: number;
  end: number;
  pod: string;
  kind: 'cancel' | 'retry' | 'retry-failed' | 'job-start' | 'job-stop';
  /** Message id (cancel, retry) or job name. */
  target: string;
  status: number;
  outcome: Outcome;
  /** The status the message came back with (cancel, retry). */
  messageStatus?: string;
}

export interface FaultRecord {
  kind: string;
  target: string;
  start: number;
  /** When it was healed; undefined while active. */
  end?: number;
}

export interface ServerError {
  at: number;
  pod: string;
  request: string;
  status: number;
  body: string;
}

export class History {
  readonly startedAt = Date.now();
  readonly intakes: IntakeRecord[] = [];
  readonly actions: ActionRecord[] = [];
  readonly faults: FaultRecord[] = [];
  readonly serverErrors: ServerError[] = [];
  /** The cadence job's run count, sampled (at, runCount). */
  readonly jobSamples: Array<{ at: number; runCount: number }> = [];
  readonly failedStarts: Array<{ at: number; pod: string; code: number | null; tail: string }> = [];
  /** When the nemesis stopped and everything was healed. */
  healedAt = 0;

  intake(record: IntakeRecord): number {
    this.intakes.push(record);
    return this.intakes.length - 1;
  }

  action(record: ActionRecord): void {
    this.actions.push(record);
  }

  /** Records a fault as active from now; returns the record, whose `end` the nemesis sets when it heals. */
  faultBegins(kind: string, target: string): FaultRecord {
    const record: FaultRecord = { kind, target, start: Date.now() };
    this.faults.push(record);
    return record;
  }

  /** An answer of 500 or above other than 503 (`unavailable`, documented): never allowed. */
  serverError(error: ServerError): void {
    this.serverErrors.push(error);
  }

  /** Whether any fault was active at some time in [from, to]. */
  faultDuring(from: number, to: number): FaultRecord | undefined {
    return this.faults.find((fault) => fault.start <= to && (fault.end ?? Number.POSITIVE_INFINITY) >= from);
  }
}
