import type { HelperOptions } from 'handlebars';

/** Template helpers: small, pure, no markup from strings the user controls. */
export const helpers = {
  eq: (a: unknown, b: unknown) => a === b,
  ne: (a: unknown, b: unknown) => a !== b,
  or: (...args: unknown[]) => args.slice(0, -1).some(Boolean),
  and: (...args: unknown[]) => args.slice(0, -1).every(Boolean),
  not: (a: unknown) => !a,
  /** `2026-11-25 12:34:56 UTC` */
  datetime: (value: unknown) => {
    if (!value) return '';
    const date = value instanceof Date ? value : new Date(String(value));
    if (Number.isNaN(date.getTime())) return '';
    return `${date.toISOString().slice(0, 19).replace('T', ' ')} UTC`;
  },
  /** A value inside a URL path segment, e.g. a model id with a slash. */
  enc: (value: unknown) => encodeURIComponent(String(value ?? '')),
  /** Adds the current query string's filters to a pager link. */
  qs: (params: Record<string, unknown> | undefined, options: HelperOptions) => {
    const merged = { ...(params ?? {}), ...(options.hash as Record<string, unknown>) };
    const search = new URLSearchParams();
    for (const [k, v] of Object.entries(merged)) {
      if (v === undefined || v === null || v === '') continue;
      search.set(k, v instanceof Date ? v.toISOString() : String(v));
    }
    return search.toString();
  },
};
