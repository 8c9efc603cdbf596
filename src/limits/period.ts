import { nextResetAt, periodStart } from '../keys/usage-period';
import type { LimitPeriod } from './limits.types';

/**
 * When a counter of `period` next starts over (UTC: midnight, Monday, the 1st), as key limits do;
 * null for the lifetime periods (`never` of key limits, `total` of token budgets).
 */
export function periodEnd(period: LimitPeriod, now: Date = new Date()): Date | null {
  return period === 'total' || period === 'never' ? null : nextResetAt(period, now);
}

/** Where the current period began; null for lifetime periods. */
export function periodBegin(period: LimitPeriod, now: Date = new Date()): Date | null {
  return period === 'total' || period === 'never' ? null : periodStart(period, now);
}

/**
 * What a counter holds now: a period that ended counts from zero without waiting for any job,
 * and the next reset is the end of the period `now` lies in.
 */
export function rolled(
  used: number,
  resetAt: Date | null,
  period: LimitPeriod,
  now: Date = new Date(),
): { used: number; resetAt: Date | null } {
  if (resetAt && resetAt.getTime() <= now.getTime()) return { used: 0, resetAt: periodEnd(period, now) };
  return { used, resetAt };
}
