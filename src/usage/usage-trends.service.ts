import { Injectable } from '@nestjs/common';
import { InjectDataSource } from '@nestjs/typeorm';
import { DataSource } from 'typeorm';
import { nextResetAt } from '../keys/usage-period';
import type { TrendGroup } from './dto/trends.query';
import { project, type Projection } from './projection';
import { tokenBudgets, type TokenBudget } from './token-budgets';
import { addDays, costWindow, lastDays, roundUsd, type TimeWindow } from './usage-math';

export interface TrendDay {
  day: string;
  requests: number;
  tokens: number;
  cost: number;
  /** The least-squares line's cost on that day, for the chart. */
  trend: number;
}

export interface BudgetTrend {
  budget: TokenBudget;
  /** The end of the budget's current period (for a total budget, 30 days from now: the horizon looked at). */
  periodEnd: Date;
  projection: Projection;
}

export interface GroupTrend {
  id: string;
  label: string;
  provider: string | null;
  series: TrendDay[];
  /** Cost this calendar month, and where it is heading by the month's end. */
  monthToDate: number;
  projection: Projection;
  budgets: BudgetTrend[];
}

export interface UsageTrends {
  groupBy: TrendGroup;
  window: TimeWindow;
  month: TimeWindow;
  groups: GroupTrend[];
  asOf: Date;
}

const GROUPS: Record<TrendGroup, { select: string; join: string; groupBy: string }> = {
  model: {
    select: `r.provider || '/' || r.model AS id, coalesce(nullif(r.model, ''), 'unknown model') AS label, r.provider`,
    join: '',
    groupBy: 'r.provider, r.model',
  },
  token: {
    select: `coalesce(r.access_token_id::text, 'none') AS id,
      coalesce(t.name, CASE WHEN r.access_token_id IS NULL THEN 'no access token' ELSE 'deleted token' END) AS label,
      NULL::text AS provider`,
    join: 'LEFT JOIN access_tokens t ON t.id = r.access_token_id',
    groupBy: 'r.access_token_id, t.name',
  },
};

const UNIT_VALUE: Record<TokenBudget['unit'], (d: TrendDay) => number> = {
  usd: (d) => d.cost,
  tokens: (d) => d.tokens,
  requests: (d) => d.requests,
};

/**
 * Cost analysis and trends: per model or access token, the last 30 UTC days from the daily
 * rollups, a linear trend, the burn rate and projection (`project`, shared with the alerts'
 * projected-overrun rule), and for tokens the day each budget runs out at that pace.
 */
@Injectable()
export class UsageTrendsService {
  constructor(@InjectDataSource() private readonly dataSource: DataSource) {}

  async trends(groupBy: TrendGroup, now: Date = new Date()): Promise<UsageTrends> {
    const { window, labels } = lastDays(now, 30);
    const month = costWindow(null, now);
    const g = GROUPS[groupBy];
    const from = new Date(Math.min(window.start.getTime(), month.start.getTime()));
    const rows = await this.dataSource.query<
      {
        id: string;
        label: string;
        provider: string | null;
        day: string;
        requests: number;
        tokens: number;
        cost: number;
      }[]
    >(
      `SELECT ${g.select}, to_char(r.period_start AT TIME ZONE 'UTC', 'YYYY-MM-DD') AS day,
              sum(r.requests)::float8 AS requests, sum(r.total_tokens)::float8 AS tokens, sum(r.cost)::float8 AS cost
         FROM usage_rollups r ${g.join}
        WHERE r.bucket = 'day' AND r.period_start >= $1 AND r.period_start < $2
        GROUP BY ${g.groupBy}, 4`,
      [from, window.end],
    );
    const budgets =
      groupBy === 'token'
        ? await tokenBudgets(this.dataSource, [...new Set(rows.map((r) => r.id).filter((id) => id !== 'none'))])
        : [];
    const monthStart = month.start.toISOString().slice(0, 10);

    const byGroup = new Map<string, typeof rows>();
    for (const r of rows) byGroup.set(r.id, [...(byGroup.get(r.id) ?? []), r]);
    const groups: GroupTrend[] = [];
    for (const [id, groupRows] of byGroup) {
      const byDay = new Map(groupRows.map((r) => [r.day, r]));
      const days = labels.map((day) => {
        const r = byDay.get(day);
        return { day, requests: r?.requests ?? 0, tokens: r?.tokens ?? 0, cost: roundUsd(r?.cost ?? 0), trend: 0 };
      });
      const monthToDate = roundUsd(groupRows.filter((r) => r.day >= monthStart).reduce((a, r) => a + r.cost, 0));
      const projection = project(
        days.map((d) => ({ day: d.day, value: d.cost })),
        { used: monthToDate, limit: null, now, periodEnd: month.end },
      );
      days.forEach((d, i) => (d.trend = roundUsd(Math.max(0, projection.intercept + projection.slopePerDay * i))));
      groups.push({
        id,
        label: groupRows[0].label,
        provider: groupRows[0].provider,
        series: days,
        monthToDate,
        projection,
        budgets: budgets.filter((b) => b.accessTokenId === id).map((b) => budgetTrend(b, days, now)),
      });
    }
    groups.sort((a, b) => b.monthToDate - a.monthToDate || b.projection.burnRatePerDay - a.projection.burnRatePerDay);
    return { groupBy, window, month, groups, asOf: now };
  }
}

/** A budget's pace: its own measure per day, against what is left of it in its period. */
export function budgetTrend(budget: TokenBudget, days: TrendDay[], now: Date): BudgetTrend {
  const ended = budget.resetAt !== null && budget.resetAt.getTime() <= now.getTime();
  const periodEnd =
    budget.period === 'total'
      ? addDays(now, 30)
      : ended || !budget.resetAt
        ? nextResetAt(budget.period, now)!
        : budget.resetAt;
  const projection = project(
    days.map((d) => ({ day: d.day, value: UNIT_VALUE[budget.unit](d) })),
    // A period that ended counts from zero even before the reset runs.
    { used: ended ? 0 : budget.used, limit: budget.limit, now, periodEnd },
  );
  return { budget, periodEnd, projection };
}
