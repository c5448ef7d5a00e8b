/**
 * A URL fit for a log line or an error message: user name and password are
 * replaced, so `postgres://app:s3cret@db/x` reads `postgres://***@db/x`.
 * Anything that is not a URL is returned unchanged.
 */
export function withoutCredentials(url: string): string {
  if (!URL.canParse(url)) return url;
  const parsed = new URL(url);
  if (!parsed.username && !parsed.password) return url;
  parsed.username = '***';
  parsed.password = '';
  return parsed.toString();
}
