const KNOWN_PREFIXES = [
  'sk-ant-admin01-',
  'sk-ant-api03-',
  'sk-or-v1-',
  'sk-svcacct-',
  'sk-admin-',
  'sk-proj-',
  'sk-None-',
].sort((a, b) => b.length - a.length);

/**
 * The masked form of a secret that the API, console and audit log show: the provider's public
 * prefix and the last four characters (`sk-proj-…a1b2`). Enough to tell keys apart and to match
 * one against the provider's dashboard, never enough to use it.
 */
export function maskSecret(secret: string): string {
  const tail = secret.length >= 16 ? secret.slice(-4) : '';
  // Only the providers' well-known markers are shown; the characters after them are random.
  const prefix = KNOWN_PREFIXES.find((p) => secret.startsWith(p)) ?? /^[A-Za-z]{1,4}[-_]/.exec(secret)?.[0] ?? '';
  return `${prefix}…${tail}`;
}
