/** Request and response headers: reading, setting, and the rate-limit headers providers send. */
import type { HeadersLike, RateLimitSnapshot, RateLimitWindow } from './contract';

export function readHeader(headers: HeadersLike, name: string): string | undefined {
  if (headers instanceof Headers) {
    return headers.get(name) ?? undefined;
  }
  const wanted = name.toLowerCase();
  for (const [key, value] of Object.entries(headers)) {
    if (key.toLowerCase() === wanted && value !== undefined) {
      return Array.isArray(value) ? value.join(', ') : String(value);
    }
  }
  return undefined;
}

/** Sets a header, replacing any spelling of it already there (`authorization` vs `Authorization`). */
export function setHeader(headers: Record<string, string>, name: string, value: string): void {
  removeHeader(headers, name);
  headers[name] = value;
}

export function removeHeader(headers: Record<string, string>, name: string): void {
  const wanted = name.toLowerCase();
  for (const key of Object.keys(headers)) {
    if (key.toLowerCase() === wanted) {
      delete headers[key];
    }
  }
}

export function readNumberHeader(headers: HeadersLike, name: string): number | undefined {
  const value = readHeader(headers, name);
  if (value === undefined || value.trim() === '') {
    return undefined;
  }
  const number = Number(value);
  return Number.isFinite(number) ? number : undefined;
}

const DURATION_UNITS_MS: Record<string, number> = {
  ns: 1e-6,
  us: 1e-3,
  µs: 1e-3,
  ms: 1,
  s: 1000,
  m: 60_000,
  h: 3_600_000,
};

/**
 * Go-style durations as OpenAI and Groq print their resets: `12ms`, `6s`, `1m30s`, `2m59.56s`.
 * A bare number is taken as seconds. Undefined when the text is not a duration.
 */
export function parseDuration(text: string): number | undefined {
  const value = text.trim();
  if (/^\d+(?:\.\d+)?$/.test(value)) {
    return Number(value) * 1000;
  }
  const part = /(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)/y;
  let total = 0;
  let index = 0;
  while (index < value.length) {
    part.lastIndex = index;
    const match = part.exec(value);
    if (!match) {
      return undefined;
    }
    total += Number(match[1]) * DURATION_UNITS_MS[match[2]];
    index = part.lastIndex;
  }
  return index > 0 ? Math.round(total) : undefined;
}

/** `retry-after`: seconds, or an HTTP date. */
export function parseRetryAfter(value: string | undefined, now = Date.now()): number | undefined {
  if (value === undefined || value.trim() === '') {
    return undefined;
  }
  if (/^\s*\d+(?:\.\d+)?\s*$/.test(value)) {
    return Math.round(Number(value) * 1000);
  }
  const date = Date.parse(value);
  return Number.isNaN(date) ? undefined : Math.max(0, date - now);
}

/** An RFC 3339 time (Anthropic's resets) as milliseconds from `now`. */
export function millisecondsUntil(value: string | undefined, now = Date.now()): number | undefined {
  if (value === undefined) {
    return undefined;
  }
  const date = Date.parse(value);
  return Number.isNaN(date) ? undefined : Math.max(0, date - now);
}

/** `x-ratelimit-{limit,remaining,reset}-{requests,tokens}` as OpenAI, Groq and others send them. */
export function openAiStyleRateLimits(headers: HeadersLike): RateLimitSnapshot {
  const snapshot: RateLimitSnapshot = {};
  for (const kind of ['requests', 'tokens'] as const) {
    const window = compactWindow({
      limit: readNumberHeader(headers, `x-ratelimit-limit-${kind}`),
      remaining: readNumberHeader(headers, `x-ratelimit-remaining-${kind}`),
      resetMs: optionalDuration(readHeader(headers, `x-ratelimit-reset-${kind}`)),
    });
    if (window) {
      snapshot[kind] = window;
    }
  }
  const retryAfterMs = parseRetryAfter(readHeader(headers, 'retry-after'));
  if (retryAfterMs !== undefined) {
    snapshot.retryAfterMs = retryAfterMs;
  }
  return snapshot;
}

function optionalDuration(value: string | undefined): number | undefined {
  return value === undefined ? undefined : parseDuration(value);
}

/** Drops unset fields; undefined when nothing was set. */
export function compactWindow(window: RateLimitWindow): RateLimitWindow | undefined {
  const compact: RateLimitWindow = {};
  for (const key of ['limit', 'remaining', 'resetMs'] as const) {
    if (window[key] !== undefined) {
      compact[key] = window[key];
    }
  }
  return Object.keys(compact).length > 0 ? compact : undefined;
}
