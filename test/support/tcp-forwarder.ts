import net from 'node:net';

/**
 * A TCP forwarder on 127.0.0.1 in front of a real server, to cut the network
 * path under a running service: `close()` stops listening and drops every
 * connection (new connects are refused), `blackHole()` accepts connections and
 * never answers (a dead route), `hangUp()` accepts and closes each connection
 * at once (a server that ends every session), `open()` forwards again on the
 * same port. It counts the client connections it accepted (`accepted`) and
 * those open now (`current`).
 */
export interface TcpForwarder {
  port: number;
  readonly accepted: number;
  readonly current: number;
  open(): Promise<void>;
  close(): Promise<void>;
  blackHole(): Promise<void>;
  hangUp(): Promise<void>;
  stop(): Promise<void>;
}

export async function startTcpForwarder(targetHost: string, targetPort: number): Promise<TcpForwarder> {
  const sockets = new Set<net.Socket>();
  const clients = new Set<net.Socket>();
  let accepted = 0;
  let mode: 'forward' | 'black-hole' | 'hang-up' = 'forward';
  let server: net.Server | undefined;
  let port = 0;

  const listen = () =>
    new Promise<void>((resolve, reject) => {
      server = net.createServer((client) => {
        sockets.add(client);
        clients.add(client);
        accepted += 1;
        client.on('close', () => {
          sockets.delete(client);
          clients.delete(client);
        });
        client.on('error', () => {});
        if (mode === 'hang-up') {
          client.destroy();
          return;
        }
        if (mode === 'black-hole') return;
        const upstream = net.connect(targetPort, targetHost);
        sockets.add(upstream);
        upstream.on('close', () => sockets.delete(upstream));
        upstream.on('error', () => client.destroy());
        client.on('error', () => upstream.destroy());
        client.pipe(upstream).pipe(client);
      });
      server.once('error', reject);
      server.listen(port, '127.0.0.1', () => {
        port = (server!.address() as net.AddressInfo).port;
        resolve();
      });
    });

  const shut = async () => {
    const closing = server;
    server = undefined;
    for (const socket of sockets) socket.destroy();
    sockets.clear();
    if (closing) await new Promise<void>((resolve) => closing.close(() => resolve()));
  };

  await listen();
  return {
    get port() {
      return port;
    },
    get accepted() {
      return accepted;
    },
    get current() {
      return clients.size;
    },
    async open() {
      await shut();
      mode = 'forward';
      await listen();
    },
    close: shut,
    async blackHole() {
      await shut();
      mode = 'black-hole';
      await listen();
    },
    async hangUp() {
      await shut();
      mode = 'hang-up';
      await listen();
    },
    stop: shut,
  };
}
