// The HTTP-only ceiling: the same POSTs with no database, 50 at once over keep-alive connections.
import { benchMessages, env, post, readyThenGo } from './common.ts';

const messages = benchMessages();
await readyThenGo();
let next = 0;
await Promise.all(
  Array.from({ length: env.concurrency || 50 }, async () => {
    while (next < messages.length) {
      const message = messages[next++]!;
      await post(message);
    }
  }),
);
console.log('done');
