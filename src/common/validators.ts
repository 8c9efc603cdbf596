import { applyDecorators } from '@nestjs/common';
import { Transform } from 'class-transformer';
import { IsInt, Max, Min } from 'class-validator';

/**
 * Numbers as people and programs write them, and nothing else: `12`, `-3`, `0.25` (as JSON or
 * as form text). `true`, `"0x10"`, `"1e20"`, `" 7 "` or `""` become NaN, which every number
 * rule refuses, instead of JavaScript's 1, 16, 1e20 or 7.
 */
export function toStrictNumber(value: unknown): unknown {
  if (value === undefined || value === null) return value;
  if (typeof value === 'number') return Number.isFinite(value) ? value : Number.NaN;
  if (typeof value === 'string' && value.length <= 32 && /^-?\d+(\.\d+)?$/.test(value)) return Number(value);
  return Number.NaN;
}

/** Whole numbers only, and only those JavaScript counts exactly (|n| < 2^53). */
export function toStrictInteger(value: unknown): unknown {
  if (value === undefined || value === null) return value;
  if (typeof value === 'number') return Number.isSafeInteger(value) ? value : Number.NaN;
  if (typeof value === 'string' && /^-?\d{1,15}$/.test(value)) return Number(value);
  return Number.NaN;
}

/** Converts with `toStrictNumber`; pair it with IsNumber/Min/Max. */
export const StrictNumber = () => Transform(({ value }) => toStrictNumber(value));
/** Converts with `toStrictInteger`; pair it with IsInt/Min/Max. */
export const StrictInteger = () => Transform(({ value }) => toStrictInteger(value));

/**
 * A whole number in [min, max], converted from a form's text first. Every failure gives the one
 * message that says what is allowed, e.g. "priority must be a whole number from 0 to 1000".
 */
export function IsWholeNumber(field: string, min: number, max: number, note = ''): PropertyDecorator {
  const message = `${field} must be a whole number from ${min} to ${max}${note}`;
  return applyDecorators(StrictInteger(), IsInt({ message }), Min(min, { message }), Max(max, { message }));
}

const DATE_TIME = /^(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,6}))?)?)?(Z|[+-]\d{2}:\d{2})?$/;

/**
 * An ISO 8601 date or date-time that exists on the calendar (2026-02-30 and 24:00 do not), as
 * a Date; without a zone it is UTC, as the console's date fields say. Anything else is an
 * invalid Date, which IsDate refuses.
 */
export function toCalendarDate(value: unknown): unknown {
  if (value === undefined || value === null || value instanceof Date) return value;
  if (typeof value !== 'string') return new Date(Number.NaN);
  const m = DATE_TIME.exec(value);
  if (!m) return new Date(Number.NaN);
  const [, y, mo, d, h = '00', mi = '00', s = '00', frac = '0', zone] = m;
  const [year, month, day, hour, minute, second] = [y, mo, d, h, mi, s].map(Number);
  const probe = new Date(Date.UTC(year, month - 1, day, hour, minute, second));
  const exists =
    probe.getUTCFullYear() === year &&
    probe.getUTCMonth() === month - 1 &&
    probe.getUTCDate() === day &&
    probe.getUTCHours() === hour &&
    probe.getUTCMinutes() === minute &&
    probe.getUTCSeconds() === second;
  if (!exists) return new Date(Number.NaN);
  let offsetMinutes = 0;
  if (zone && zone !== 'Z') {
    const [zh, zm] = zone.slice(1).split(':').map(Number);
    if (zh > 23 || zm > 59) return new Date(Number.NaN);
    offsetMinutes = (zone.startsWith('-') ? -1 : 1) * (zh * 60 + zm);
  }
  const ms = Number(frac.padEnd(3, '0').slice(0, 3));
  return new Date(probe.getTime() + ms - offsetMinutes * 60_000);
}

export const CalendarDate = () => Transform(({ value }) => toCalendarDate(value));

/**
 * One spelling per email address: Unicode NFKC (fullwidth ｏ becomes o), trimmed, lower case.
 * Used wherever an email is stored or looked up, so `Owner@x` and `ｏwner@x` are one account.
 */
export function normalizeEmail(email: string): string {
  return email.normalize('NFKC').trim().toLowerCase();
}

/** Letters of other scripts that look like Latin ones (the common confusables of UTS #39). */
const CONFUSABLES: Record<string, string> = {
  // Cyrillic
  а: 'a',
  в: 'b',
  е: 'e',
  ё: 'e',
  к: 'k',
  м: 'm',
  н: 'h',
  о: 'o',
  р: 'p',
  с: 'c',
  т: 't',
  у: 'y',
  х: 'x',
  і: 'i',
  ї: 'i',
  ј: 'j',
  ѕ: 's',
  ԁ: 'd',
  ԛ: 'q',
  ԝ: 'w',
  һ: 'h',
  ӏ: 'l',
  ɡ: 'g',
  // Greek
  α: 'a',
  β: 'b',
  ε: 'e',
  ι: 'i',
  κ: 'k',
  ν: 'v',
  ο: 'o',
  ρ: 'p',
  τ: 't',
  υ: 'u',
  χ: 'x',
  ϲ: 'c',
  // Latin look-alikes and digits
  ı: 'i',
  ℓ: 'l',
  '0': 'o',
  '1': 'l',
};

/**
 * What an email looks like to a person: normalised, accents dropped, confusable letters mapped
 * to the Latin ones they imitate, digits 0/1 read as o/l. Two addresses with one skeleton are
 * look-alikes, and a new account may not look like an existing one.
 */
export function emailSkeleton(email: string): string {
  return [...normalizeEmail(email).normalize('NFD').replace(/\p{M}/gu, '')]
    .map((ch) => CONFUSABLES[ch] ?? ch)
    .join('')
    .replace(/rn/g, 'm');
}

/**
 * Trims a pasted secret: a key copied from a provider's page often carries a space or a line
 * break at either end, which is never part of the key and would fail its format check.
 */
export const TrimSecret = (): PropertyDecorator =>
  Transform(({ value }: { value: unknown }) => (typeof value === 'string' ? value.trim() : value));
