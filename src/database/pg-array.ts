/**
 * A PostgreSQL array literal (`{"a",NULL,3}`) for a one-dimensional array of plain values, to be
 * sent as one text parameter and cast in SQL (`$1::uuid[]`). node-postgres builds the same text
 * itself, but through its generic value preparation, element by element (dates in local time,
 * two regular-expression replaces per string); the usage writer sends 20 such arrays per batch
 * of up to 5,000 records, and this is the per-record part of its cost it can cut.
 *
 * Strings are always quoted (so "NULL" stays a string) with `\` and `"` escaped; dates go as ISO
 * 8601 UTC, numbers as `String(n)` (what pg sends, e.g. `6.5e-7`, which numeric reads exactly),
 * booleans as t/f, null and undefined as NULL.
 */
export type PgArrayValue = string | number | boolean | Date | null | undefined;

export function pgArray(values: readonly PgArrayValue[]): string {
  let out = '{';
  for (let i = 0; i < values.length; i++) {
    if (i > 0) out += ',';
    const v = values[i];
    if (v === null || v === undefined) out += 'NULL';
    else if (typeof v === 'string') out += quote(v);
    else if (typeof v === 'number') out += Number.isFinite(v) ? String(v) : quote(String(v));
    else if (typeof v === 'boolean') out += v ? 't' : 'f';
    else out += `"${v.toISOString()}"`;
  }
  return out + '}';
}

const NEEDS_ESCAPE = /["\\]/;

function quote(s: string): string {
  return NEEDS_ESCAPE.test(s) ? `"${s.replace(/["\\]/g, '\\$&')}"` : `"${s}"`;
}
