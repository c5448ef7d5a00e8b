import type { JobHandler } from './handler.ts';

export class UnknownHandlerError extends Error {
  override name = 'UnknownHandlerError';
  constructor(handler: string, known: readonly string[]) {
    super(`unknown handler "${handler}" (registered: ${known.join(', ') || 'none'})`);
  }
}

/**
 * The one place that knows handler names: maps a job's `handler` to the code
 * that runs it. The API validates new jobs against `names()`.
 */
export class HandlerFactory {
  readonly #handlers: ReadonlyMap<string, JobHandler>;

  constructor(handlers: Record<string, JobHandler>) {
    this.#handlers = new Map(Object.entries(handlers));
  }

  names(): string[] {
    return [...this.#handlers.keys()].sort();
  }

  has(name: string): boolean {
    return this.#handlers.has(name);
  }

  /** Throws UnknownHandlerError for a name nobody registered. */
  create(name: string): JobHandler {
    const handler = this.#handlers.get(name);
    if (!handler) throw new UnknownHandlerError(name, this.names());
    return handler;
  }
}
