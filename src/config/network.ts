import { isIP } from 'node:net';

/**
 * Helpers for the network settings (declared in settings.ts): who can reach
 * the service (the listen address) and whose address the service believes
 * (the proxies whose X-Forwarded-For it trusts).
 */

/**
 * True for addresses only this machine can reach: 127.0.0.0/8, ::1 (also as
 * ::ffff:127.x.y.z) and the name `localhost`. Any other name counts as
 * reachable from the network, since we cannot know what it resolves to.
 */
export function isLoopbackHost(host: string): boolean {
  const bare = host.replace(/^\[|\]$/g, '').toLowerCase();
  if (bare === 'localhost') return true;
  if (isIP(bare) === 4) return bare.startsWith('127.');
  if (isIP(bare) === 6) return bare === '::1' || /^(0{0,4}:){5}ffff:127\./.test(bare) || /^::ffff:127\./.test(bare);
  return false;
}

/** A listen address: an IPv4/IPv6 literal or a host name. Returns a reason when it is not one. */
export function hostProblem(host: string): string | undefined {
  const bare = host.replace(/^\[|\]$/g, '');
  if (isIP(bare) !== 0) return undefined;
  return /^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/.test(
    bare,
  )
    ? undefined
    : 'must be an IP address or a host name';
}

/**
 * express's `trust proxy` value: false (the socket's peer is the client), a
 * number of proxy hops in front of the service, or the addresses/CIDRs of
 * trusted proxies (express also knows the names loopback, linklocal and
 * uniquelocal). `true` trusts every X-Forwarded-For, which lets any client
 * choose its own address, so it is accepted only spelled out as `true`.
 */
export type TrustProxy = boolean | number | string[];

const proxyPresets = new Set(['loopback', 'linklocal', 'uniquelocal']);

/**
 * Parses the trusted-proxy setting: unset or `false` -> false; `true` -> true; a whole number
 * -> hop count; otherwise comma-separated IPs, CIDRs (`10.0.0.0/8`,
 * `fd00::/8`) or preset names. Throws Error with the reason for anything else.
 */
export function parseTrustProxy(value: string | undefined): TrustProxy {
  const text = value?.trim() ?? '';
  if (text === '' || text === 'false') return false;
  if (text === 'true') return true;
  if (/^\d+$/.test(text)) {
    const hops = Number(text);
    if (hops > 100) throw new Error('must be a hop count of at most 100, or addresses/CIDRs');
    return hops;
  }
  const entries = text.split(',').map((entry) => entry.trim());
  for (const entry of entries) {
    if (proxyPresets.has(entry)) continue;
    const [address = '', prefix, ...rest] = entry.split('/');
    const family = isIP(address);
    const maxPrefix = family === 4 ? 32 : 128;
    const prefixOk = prefix === undefined || (/^\d{1,3}$/.test(prefix) && Number(prefix) <= maxPrefix);
    if (family === 0 || !prefixOk || rest.length > 0) {
      throw new Error(
        `must be false, true, a hop count, or comma-separated IP addresses/CIDRs (loopback, linklocal, uniquelocal allowed); "${entry}" is none of these`,
      );
    }
  }
  return entries;
}

/** The address to listen on: the configured host, else 127.0.0.1 without API keys and 0.0.0.0 with them. */
export function listenHost(config: { host: string | undefined; apiKeys: readonly string[] }): string {
  return config.host ?? (config.apiKeys.length > 0 ? '0.0.0.0' : '127.0.0.1');
}
