/**
 * A URL fit for a log line or an error message: user name and password are
 * replaced, so `postgres://app:s3cret@db/x` reads `postgres://***@db/x`.
 *
 * A value the WHATWG URL parser refuses (a bad port, a space in the host) may
 * still carry a password, so it is cut textually: everything between the
 * scheme's `//` (or the start, without one) and the last `@` becomes `***`.
 * That may hide more than the user info (an `@` in the path), never less.
 * So is a value that parses without a host (`user:pw@db` reads as scheme
 * `user:`). A value without `@` is returned unchanged.
 */
export function withoutCredentials(url: string): string {
  if (!URL.canParse(url)) return withoutUserInfoText(url);
  const parsed = new URL(url);
  // `user:pw@host` parses as scheme "user:" with an opaque path: no host, yet a password.
  if (!parsed.host) return withoutUserInfoText(url);
  if (!parsed.username && !parsed.password) return url;
  parsed.username = '***';
  parsed.password = '';
  return parsed.toString();
}

function withoutUserInfoText(text: string): string {
  const at = text.lastIndexOf('@');
  if (at < 0) return text;
  const slashes = text.indexOf('//');
  const start = slashes >= 0 && slashes < at ? slashes + 2 : 0;
  return `${text.slice(0, start)}***${text.slice(at)}`;
}
