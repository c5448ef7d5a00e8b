import { type DispatchDependencies, type DispatchSettings, dispatchMessages } from '../delivery/loop.ts';
import type { JobHandler } from './handler.ts';

/**
 * The `send-messages` handler: a thin adapter from a job run to the dispatch
 * use case in `messages/`. `current()` is read at the start of every run, so
 * live configuration (webhook client, timeouts, concurrency) applies from the
 * next run on.
 */
export function sendMessagesHandler(
  current: () => { settings: DispatchSettings; deps: Omit<DispatchDependencies, 'logger'> },
): JobHandler {
  return {
    async run(context) {
      const { settings, deps } = current();
      return dispatchMessages(
        {
          runId: context.runId,
          executionId: context.executionId,
          batchSize: context.batchSize,
          signal: context.signal,
          abortDeliveries: context.deadline,
        },
        settings,
        { ...deps, logger: context.logger },
      );
    },
  };
}
