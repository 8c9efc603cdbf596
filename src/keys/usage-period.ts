import type { UsagePeriod } from './api-key.entity';

/**
 * When a usage counter of this period next starts over, in UTC: daily at midnight, weekly on
 * Monday (ISO weeks), monthly on the 1st. `never` limits are lifetime budgets: no reset.
 */
export function nextResetAt(period: UsagePeriod, now: Date = new Date()): Date | null {
  const y = now.getUTCFullYear();
  const m = now.getUTCMonth();
  const d = now.getUTCDate();
  switch (period) {
    case 'daily':
      return new Date(Date.UTC(y, m, d + 1));
    case 'weekly': {
      const daysSinceMonday = (now.getUTCDay() + 6) % 7;
      return new Date(Date.UTC(y, m, d - daysSinceMonday + 7));
    }
    case 'monthly':
      return new Date(Date.UTC(y, m + 1, 1));
    case 'never':
      return null;
  }
}

/** Where the current period started; with nextResetAt, the window reports and projections use. */
export function periodStart(period: UsagePeriod, now: Date = new Date()): Date | null {
  const y = now.getUTCFullYear();
  const m = now.getUTCMonth();
  const d = now.getUTCDate();
  switch (period) {
    case 'daily':
      return new Date(Date.UTC(y, m, d));
    case 'weekly':
      return new Date(Date.UTC(y, m, d - ((now.getUTCDay() + 6) % 7)));
    case 'monthly':
      return new Date(Date.UTC(y, m, 1));
    case 'never':
      return null;
  }
}
