import { DAY_MS } from './usage-math';

/** One UTC day of a measure (requests, tokens or USD). */
export interface DailyPoint {
  /** `YYYY-MM-DD`, UTC. */
  day: string;
  value: number;
}

export interface Projection {
  /** Least-squares line over the points; x is days since the first point's day. */
  slopePerDay: number;
  intercept: number;
  /** Mean of the last 7 points (or of all, when fewer). */
  burnRatePerDay: number;
  /** What has been used plus the burn rate carried on to the period's end. */
  projectedAtPeriodEnd: number;
  /** `YYYY-MM-DD` on which the limit is first exceeded before `periodEnd`, else null. */
  exceedsOn: string | null;
}

export interface ProjectionOptions {
  /** Already used in the current period. */
  used: number;
  /** The limit or budget; null when there is none. */
  limit: number | null;
  now: Date;
  periodEnd: Date;
}

const BURN_WINDOW_DAYS = 7;

const dayNumber = (day: string) => Math.round(Date.parse(`${day}T00:00:00Z`) / DAY_MS);

/**
 * Where usage is heading: a trend line for charts, and a burn rate that decides whether (and on
 * which day) the limit runs out before the period does. The burn rate is the recent mean rather
 * than the trend line because a line fitted over a month reacts slowly to a sudden surge, and the
 * surge is exactly what an overrun alert must catch. Callers pass zero-filled daily series: a day
 * missing from `points` is not counted as a zero.
 */
export function project(points: DailyPoint[], opts: ProjectionOptions): Projection {
  const sorted = [...points].sort((a, b) => a.day.localeCompare(b.day));
  const { slopePerDay, intercept } = leastSquares(sorted);

  const recent = sorted.slice(-BURN_WINDOW_DAYS);
  const burnRatePerDay = recent.length ? recent.reduce((sum, p) => sum + p.value, 0) / recent.length : 0;

  const daysLeft = Math.max(0, (opts.periodEnd.getTime() - opts.now.getTime()) / DAY_MS);
  const projectedAtPeriodEnd = opts.used + burnRatePerDay * daysLeft;

  return { slopePerDay, intercept, burnRatePerDay, projectedAtPeriodEnd, exceedsOn: exceedsOn(burnRatePerDay, opts) };
}

function leastSquares(sorted: DailyPoint[]): { slopePerDay: number; intercept: number } {
  if (sorted.length === 0) return { slopePerDay: 0, intercept: 0 };
  const origin = dayNumber(sorted[0].day);
  const xs = sorted.map((p) => dayNumber(p.day) - origin);
  const n = sorted.length;
  const meanX = xs.reduce((a, b) => a + b, 0) / n;
  const meanY = sorted.reduce((a, p) => a + p.value, 0) / n;
  let sxx = 0;
  let sxy = 0;
  sorted.forEach((p, i) => {
    sxx += (xs[i] - meanX) ** 2;
    sxy += (xs[i] - meanX) * (p.value - meanY);
  });
  // One point (or all on one day) has no slope: the line is flat through the mean.
  const slopePerDay = sxx === 0 ? 0 : sxy / sxx;
  return { slopePerDay, intercept: meanY - slopePerDay * meanX };
}

function exceedsOn(burnRatePerDay: number, opts: ProjectionOptions): string | null {
  const { used, limit, now, periodEnd } = opts;
  if (limit === null || now.getTime() >= periodEnd.getTime()) return null;
  if (used > limit) return dayLabel(now);
  if (burnRatePerDay <= 0) return null;
  const crossing = new Date(now.getTime() + ((limit - used) / burnRatePerDay) * DAY_MS);
  return crossing.getTime() < periodEnd.getTime() ? dayLabel(crossing) : null;
}

const dayLabel = (d: Date) => d.toISOString().slice(0, 10);
