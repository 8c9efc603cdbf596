/** Keeping keys out of messages: providers echo (partly masked) keys back in their error bodies. */

/**
 * Known key shapes, whole or masked (`sk-proj-****abcd`), and any long token-like run. Providers
 * echo keys in errors ("Incorrect API key provided: sk-proj-…abcd"); none of it may reach a log.
 */
const SECRET_PATTERNS: RegExp[] = [
  /\b(?:sk|gsk|rk|pk|xai)[-_][A-Za-z0-9*_-]{6,}/g,
  /[A-Za-z0-9_-]*\*{3,}[A-Za-z0-9_*-]*/g,
  /\b[A-Za-z0-9_-]{32,}\b/g,
];

export function redactSecrets(text: string, maxLength = 500): string {
  let redacted = text;
  for (const pattern of SECRET_PATTERNS) {
    redacted = redacted.replace(pattern, '[redacted]');
  }
  return redacted.length > maxLength ? `${redacted.slice(0, maxLength)}…` : redacted;
}

/** Replaces every occurrence of a known secret; for text that might quote the key exactly. */
export function withoutSecret(text: string, secret: string): string {
  return secret.length > 0 ? text.split(secret).join('[redacted]') : text;
}
