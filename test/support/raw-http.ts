import http from 'node:http';
import net from 'node:net';

export interface RawResponse {
  status: number;
  headers: Headers;
  text: string;
}

/**
 * One HTTP request with exactly these bytes: the path is sent as given (no
 * normalisation or re-encoding, unlike fetch), the body as given, with a
 * Content-Length. For inputs a well-behaved client library would refuse to send.
 */
export function rawRequest(
  baseUrl: string,
  method: string,
  path: string,
  options: { headers?: Record<string, string>; body?: Buffer | string } = {},
): Promise<RawResponse> {
  const url = new URL(baseUrl);
  const body = options.body === undefined ? undefined : Buffer.from(options.body);
  return new Promise((resolve, reject) => {
    const request = http.request(
      {
        host: url.hostname,
        port: url.port,
        method,
        path,
        headers: { ...(body ? { 'content-length': String(body.length) } : {}), ...options.headers },
        agent: false,
      },
      (response) => {
        const chunks: Buffer[] = [];
        response.on('data', (chunk: Buffer) => chunks.push(chunk));
        response.on('end', () => {
          const headers = new Headers();
          for (const [name, value] of Object.entries(response.headers)) {
            if (value !== undefined) headers.set(name, Array.isArray(value) ? value.join(', ') : value);
          }
          resolve({ status: response.statusCode ?? 0, headers, text: Buffer.concat(chunks).toString('utf8') });
        });
        response.on('error', reject);
      },
    );
    request.on('error', reject);
    request.end(body);
  });
}

/**
 * Sends exactly these bytes on a new TCP connection and reads until the
 * server closes it (or `timeoutMs`): for requests no HTTP client library can
 * send at all (a bad request line, a control byte in a header). Resolves the
 * parsed status line, headers and body; status 0 when the server answered nothing.
 */
export async function rawExchange(baseUrl: string, bytes: Buffer | string, timeoutMs = 5_000): Promise<RawResponse> {
  const raw = await rawText(baseUrl, bytes, timeoutMs);
  const [head = '', ...rest] = raw.split('\r\n\r\n');
  const [statusLine = '', ...headerLines] = head.split('\r\n');
  const headers = new Headers();
  for (const line of headerLines) {
    const colon = line.indexOf(':');
    if (colon > 0) headers.append(line.slice(0, colon).trim(), line.slice(colon + 1).trim());
  }
  const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(statusLine)?.[1] ?? 0);
  return { status, headers, text: Buffer.from(rest.join('\r\n\r\n'), 'latin1').toString('utf8') };
}

/**
 * Sends exactly these bytes on a new TCP connection and resolves everything
 * the server wrote (latin1) once it closes the connection (or after `timeoutMs`).
 */
export function rawText(baseUrl: string, bytes: Buffer | string, timeoutMs = 5_000): Promise<string> {
  const url = new URL(baseUrl);
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    const socket = net.connect({ host: url.hostname, port: Number(url.port) }, () => socket.write(bytes));
    const timer = setTimeout(() => socket.destroy(), timeoutMs);
    socket.on('data', (chunk: Buffer) => chunks.push(chunk));
    socket.on('error', (error: NodeJS.ErrnoException) => {
      // A reset after the answer (the server closes with our request unread) still counts.
      if (error.code !== 'ECONNRESET' && error.code !== 'EPIPE') reject(error);
    });
    socket.on('close', () => {
      clearTimeout(timer);
      resolve(Buffer.concat(chunks).toString('latin1'));
    });
  });
}
