/**
 * What an audit entry may hold. PostgreSQL refuses NUL in text and lone UTF-16 surrogates in
 * jsonb, so a request carrying either must not be able to make the audit write fail; sizes are
 * capped so that one request cannot bloat the log.
 */
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g;
// eslint-disable-next-line no-control-regex
const NUL = /\u0000/g;

export const AUDIT_LIMITS = {
  string: 500,
  depth: 5,
  items: 50,
  /** Serialised size of `details`; larger details are replaced by a note saying so. */
  details: 8_000,
} as const;

/** Replaces lone surrogates and NUL with U+FFFD and clips to `max` characters. */
export function cleanText(value: string, max: number = AUDIT_LIMITS.string): string {
  let text = value.replace(LONE_SURROGATE, '\uFFFD').replace(NUL, '\uFFFD');
  if (text.length > max) {
    // Never cut a surrogate pair in half.
    text = text.slice(0, max).replace(/[\uD800-\uDBFF]$/, '');
    text += '…';
  }
  return text;
}

export function cleanOptionalText(value: string | null | undefined, max: number): string | null {
  return value === null || value === undefined ? null : cleanText(value, max);
}

/**
 * A JSON-safe copy of `value`: strings cleaned, numbers finite, depth and breadth capped, and
 * fields whose names say "secret" dropped by `keep`.
 */
export function cleanDetails(
  value: Record<string, unknown>,
  keep: (field: string) => boolean = () => true,
): Record<string, unknown> {
  const cleaned = cleanValue(value, 0, keep);
  const object = cleaned && typeof cleaned === 'object' && !Array.isArray(cleaned) ? cleaned : {};
  const size = JSON.stringify(object).length;
  if (size > AUDIT_LIMITS.details) return { truncated: true, size, fields: Object.keys(object).slice(0, 20) };
  return object as Record<string, unknown>;
}

function cleanValue(value: unknown, depth: number, keep: (field: string) => boolean): unknown {
  if (value === null || value === undefined) return null;
  if (typeof value === 'string') return cleanText(value);
  if (typeof value === 'number') return Number.isFinite(value) ? value : String(value);
  if (typeof value === 'boolean') return value;
  if (typeof value === 'bigint') return value.toString();
  if (value instanceof Date) return Number.isNaN(value.getTime()) ? null : value.toISOString();
  if (typeof value !== 'object') return null;
  if (depth >= AUDIT_LIMITS.depth) return '[nested too deep]';
  if (Array.isArray(value)) {
    const items = value.slice(0, AUDIT_LIMITS.items).map((item) => cleanValue(item, depth + 1, keep));
    if (value.length > AUDIT_LIMITS.items) items.push(`[${value.length - AUDIT_LIMITS.items} more]`);
    return items;
  }
  const out: Record<string, unknown> = {};
  let count = 0;
  for (const [field, item] of Object.entries(value as Record<string, unknown>)) {
    if (!keep(field)) continue;
    if (++count > AUDIT_LIMITS.items) {
      out['[more fields]'] = true;
      break;
    }
    out[cleanText(field, 100)] = cleanValue(item, depth + 1, keep);
  }
  return out;
}
