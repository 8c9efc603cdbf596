import type { UsagePeriod } from '../keys/api-key.entity';
import { nextResetAt, periodStart } from '../keys/usage-period';

/** Pure usage arithmetic: time windows, cost projection, series filling and chart geometry. */

export const HOUR_MS = 3_600_000;
export const DAY_MS = 24 * HOUR_MS;

/** A half-open time window `[start, end)`. */
export interface TimeWindow {
  start: Date;
  end: Date;
}

/** The spec's UsageMetric: one day (`YYYY-MM-DD`) or one month (`YYYY-MM`) of a key's usage. */
export interface UsageMetric {
  period: string;
  requests: number;
  tokens: number;
  inputTokens: number;
  outputTokens: number;
  cost: number;
  errors: number;
}

export type UsageTotals = Omit<UsageMetric, 'period'>;

export const emptyTotals = (): UsageTotals => ({
  requests: 0,
  tokens: 0,
  inputTokens: 0,
  outputTokens: 0,
  cost: 0,
  errors: 0,
});

// ---- calendar (UTC) ------------------------------------------------------------------------------

export const startOfUtcDay = (d: Date) => new Date(Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate()));
export const startOfUtcMonth = (d: Date, monthsAhead = 0) =>
  new Date(Date.UTC(d.getUTCFullYear(), d.getUTCMonth() + monthsAhead, 1));
export const addDays = (d: Date, days: number) => new Date(d.getTime() + days * DAY_MS);
export const dayLabel = (d: Date) => d.toISOString().slice(0, 10);
export const monthLabel = (d: Date) => d.toISOString().slice(0, 7);

/** The last `count` UTC days, today included, oldest first: the window and each day's label. */
export function lastDays(now: Date, count: number): { window: TimeWindow; labels: string[] } {
  const today = startOfUtcDay(now);
  const start = addDays(today, -(count - 1));
  const labels = Array.from({ length: count }, (_, i) => dayLabel(addDays(start, i)));
  return { window: { start, end: addDays(today, 1) }, labels };
}

/** The last `count` UTC calendar months, this one included, oldest first. */
export function lastMonths(now: Date, count: number): { window: TimeWindow; labels: string[] } {
  const start = startOfUtcMonth(now, -(count - 1));
  const labels = Array.from({ length: count }, (_, i) => monthLabel(startOfUtcMonth(start, i)));
  return { window: { start, end: startOfUtcMonth(now, 1) }, labels };
}

/** One metric per label, in the labels' order; a label without a row gets zeros. */
export function fillSeries(labels: string[], rows: UsageMetric[]): UsageMetric[] {
  const byPeriod = new Map(rows.map((r) => [r.period, r]));
  return labels.map((period) => byPeriod.get(period) ?? { period, ...emptyTotals() });
}

export function sumMetrics(rows: UsageTotals[]): UsageTotals {
  const total = emptyTotals();
  for (const r of rows) {
    total.requests += r.requests;
    total.tokens += r.tokens;
    total.inputTokens += r.inputTokens;
    total.outputTokens += r.outputTokens;
    total.cost += r.cost;
    total.errors += r.errors;
  }
  total.cost = roundUsd(total.cost);
  return total;
}

/** Failed share of all attempts (0 with no attempts), a fraction from 0 to 1. */
export const errorRate = (errors: number, requests: number) => (requests > 0 ? errors / requests : 0);

/** Costs are stored with 8 decimals; sums of doubles are rounded back to that. */
export const roundUsd = (usd: number) => Math.round(usd * 1e8) / 1e8;

// ---- console ranges ----------------------------------------------------------------------------

export const USAGE_RANGES = ['today', '7d', '30d', 'month'] as const;
export type UsageRange = (typeof USAGE_RANGES)[number];
export const RANGE_LABELS: Record<UsageRange, string> = {
  today: 'today',
  '7d': 'last 7 days',
  '30d': 'last 30 days',
  month: 'this month',
};

/** A console range as a window of whole UTC days (or the calendar month), today included. */
export function rangeWindow(range: UsageRange, now: Date): TimeWindow {
  const tomorrow = addDays(startOfUtcDay(now), 1);
  switch (range) {
    case 'today':
      return { start: startOfUtcDay(now), end: tomorrow };
    case '7d':
      return lastDays(now, 7).window;
    case '30d':
      return lastDays(now, 30).window;
    case 'month':
      return { start: startOfUtcMonth(now), end: startOfUtcMonth(now, 1) };
  }
}

// ---- cost tracking -----------------------------------------------------------------------------

/**
 * The window a key's costs are tracked over: the period of its usage limit (UTC day, ISO week
 * or calendar month), or the calendar month when it has no limit or a lifetime (`never`) one.
 */
export function costWindow(period: UsagePeriod | null | undefined, now: Date): TimeWindow {
  if (period && period !== 'never') {
    return { start: periodStart(period, now)!, end: nextResetAt(period, now)! };
  }
  return { start: startOfUtcMonth(now), end: startOfUtcMonth(now, 1) };
}

/** The least time a projection extrapolates from: one minute's spend must not become a month's. */
export const MIN_PROJECTION_ELAPSED_MS = HOUR_MS;

export const PROJECTION_FORMULA =
  'projected = current / elapsed × length, where elapsed = now − period start (at least 1 hour, ' +
  'at most the period length) and length = period end − period start';

/**
 * The cost at the end of the window if spending goes on at the pace so far:
 *
 *   projected = current / elapsed × length
 *   elapsed   = clamp(now − start, 1 hour, length)
 *   length    = end − start
 *
 * The one-hour floor keeps the first minutes of a period from projecting a few cents into
 * thousands; the ceiling makes a finished window project exactly what it cost.
 */
export function projectCost(current: number, window: TimeWindow, now: Date): number {
  const length = window.end.getTime() - window.start.getTime();
  if (length <= 0 || current <= 0) return roundUsd(Math.max(current, 0));
  const elapsed = Math.min(length, Math.max(now.getTime() - window.start.getTime(), MIN_PROJECTION_ELAPSED_MS));
  return roundUsd((current / elapsed) * length);
}

// ---- chart geometry ----------------------------------------------------------------------------

/** The smallest 1, 2 or 5 × 10ⁿ at or above `max` (1 for nothing), so axis ticks are round. */
export function niceCeiling(max: number): number {
  if (!(max > 0)) return 1;
  const magnitude = 10 ** Math.floor(Math.log10(max));
  for (const step of [1, 2, 5, 10]) {
    const candidate = step * magnitude;
    // Guards against 0.30000000000000004-style overshoot on exact powers.
    if (candidate >= max * (1 - 1e-12)) return Number(candidate.toPrecision(12));
  }
  return 10 * magnitude;
}

/**
 * An axis from 0 with `ticks` equal steps of a round size (1, 2 or 5 × 10ⁿ) that reaches `max`;
 * `whole` axes (counts) step by whole numbers, so 1 request is not labelled 0.25, 0.5…
 */
export function niceScale(max: number, ticks = 4, whole = false): { top: number; step: number } {
  // Nothing to show still gets an axis: 0 to 1 (or to `ticks` for counts).
  let step = max > 0 ? niceCeiling(max / ticks) : 1 / ticks;
  if (whole) step = Math.max(1, Math.ceil(step));
  return { top: Number((step * ticks).toPrecision(12)), step };
}

/** `count` + 1 evenly spaced tick values from 0 to `top`. */
export const axisTicks = (top: number, count = 4): number[] =>
  Array.from({ length: count + 1 }, (_, i) => Number(((top * i) / count).toPrecision(12)));

export interface PlotArea {
  x: number;
  y: number;
  width: number;
  height: number;
}

export interface Bar {
  x: number;
  y: number;
  width: number;
  height: number;
}

const round2 = (n: number) => Math.round(n * 100) / 100;

/**
 * One bar per value, left to right in equal slots of the plot area, growing up from its bottom;
 * `gap` is the share of each slot left empty. Heights scale to `top` (the axis maximum).
 */
export function barLayout(values: number[], area: PlotArea, top: number, gap = 0.2): Bar[] {
  const slot = values.length > 0 ? area.width / values.length : 0;
  const width = slot * (1 - gap);
  return values.map((value, i) => {
    const height = top > 0 ? (Math.max(0, Math.min(value, top)) / top) * area.height : 0;
    return {
      x: round2(area.x + i * slot + (slot - width) / 2),
      y: round2(area.y + area.height - height),
      width: round2(width),
      height: round2(height),
    };
  });
}

/** The points of a line through the middle of each slot, scaled to `top`. */
export function linePoints(values: number[], area: PlotArea, top: number): { x: number; y: number }[] {
  const slot = values.length > 0 ? area.width / values.length : 0;
  return values.map((value, i) => ({
    x: round2(area.x + i * slot + slot / 2),
    y: round2(area.y + area.height - (top > 0 ? (Math.max(0, Math.min(value, top)) / top) * area.height : 0)),
  }));
}

// ---- display -----------------------------------------------------------------------------------

const countFormat = new Intl.NumberFormat('en-US', { maximumFractionDigits: 0 });
const compactFormat = new Intl.NumberFormat('en-US', { notation: 'compact', maximumFractionDigits: 1 });

export const formatCount = (n: number) => countFormat.format(n);
export const formatCompact = (n: number) => compactFormat.format(n);

/** Dollars with cents, and more digits for amounts below a cent so they do not read as zero. */
export function formatUsd(usd: number): string {
  const digits = usd !== 0 && Math.abs(usd) < 0.01 ? 4 : 2;
  return `$${usd.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits })}`;
}

export const formatPercent = (fraction: number) =>
  `${(fraction * 100).toLocaleString('en-US', { maximumFractionDigits: 1 })}%`;

// ---- report windows ----------------------------------------------------------------------------

/** The longest report: a little over a year, so a year-on-year look fits and a typo does not scan a decade. */
export const MAX_REPORT_DAYS = 400;

const DATE_ONLY = /^\d{4}-\d{2}-\d{2}$/;
const HAS_ZONE = /(Z|[+-]\d{2}(:?\d{2})?)$/i;

/**
 * An instant from a report bound: a bare date is midnight UTC (for an end bound, the midnight
 * after it, so the day is included); a date-time without a zone is read as UTC.
 */
export function parseBound(value: string, edge: 'start' | 'end'): Date | null {
  if (DATE_ONLY.test(value)) {
    const day = new Date(`${value}T00:00:00Z`);
    if (Number.isNaN(day.getTime()) || dayLabel(day) !== value) return null;
    return edge === 'end' ? addDays(day, 1) : day;
  }
  const instant = new Date(HAS_ZONE.test(value) ? value : `${value}Z`);
  return Number.isNaN(instant.getTime()) ? null : instant;
}

export type ReportWindow =
  { ok: true; window: TimeWindow; granularity: 'day' | 'hour' } | { ok: false; field: 'from' | 'to'; message: string };

/**
 * The window a report covers, by default the last 30 days. Whole UTC days read the daily
 * rollups; anything else reads the hourly ones, widened to whole hours (what they can tell).
 */
export function reportWindow(from: string | undefined, to: string | undefined, now: Date): ReportWindow {
  const fallback = lastDays(now, 30).window;
  const start = from === undefined ? fallback.start : parseBound(from, 'start');
  if (!start) return { ok: false, field: 'from', message: 'from is not a valid date' };
  const end = to === undefined ? fallback.end : parseBound(to, 'end');
  if (!end) return { ok: false, field: 'to', message: 'to is not a valid date' };
  if (start.getTime() >= end.getTime()) return { ok: false, field: 'from', message: 'from must be before to' };
  if (end.getTime() - start.getTime() > MAX_REPORT_DAYS * DAY_MS) {
    return { ok: false, field: 'to', message: `a report covers at most ${MAX_REPORT_DAYS} days` };
  }
  const wholeDays = start.getTime() % DAY_MS === 0 && end.getTime() % DAY_MS === 0;
  if (wholeDays) return { ok: true, window: { start, end }, granularity: 'day' };
  return {
    ok: true,
    window: {
      start: new Date(Math.floor(start.getTime() / HOUR_MS) * HOUR_MS),
      end: new Date(Math.ceil(end.getTime() / HOUR_MS) * HOUR_MS),
    },
    granularity: 'hour',
  };
}

/** The labels of every UTC day the window touches, oldest first. */
export function daysOf(window: TimeWindow): string[] {
  const labels: string[] = [];
  for (let d = startOfUtcDay(window.start); d < window.end; d = addDays(d, 1)) labels.push(dayLabel(d));
  return labels;
}
