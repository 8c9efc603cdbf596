import { Inject, Injectable } from '@nestjs/common';
import { InjectDataSource } from '@nestjs/typeorm';
import { DataSource } from 'typeorm';
import { KEYWARD_CONFIG } from '../config/config.constants';
import type { KeywardConfig } from '../config/config';
import { ROLLUP_DIMENSIONS } from '../reports/report-sql';
import { project, type Projection } from '../usage/projection';
import { tokenBudgets } from '../usage/token-budgets';
import { addDays, costWindow, DAY_MS, lastDays, roundUsd, type TimeWindow } from '../usage/usage-math';

export interface Spender {
  id: string;
  label: string;
  provider: string | null;
  requests: number;
  cost: number;
}

export interface KeyAttention {
  id: string;
  name: string;
  provider: string;
  health: string;
  healthReason: string | null;
  expiresAt: Date | null;
  /** `unhealthy`, `expired` or `expiring`. */
  why: 'unhealthy' | 'expired' | 'expiring';
}

export interface Dashboard {
  month: TimeWindow;
  spend: { monthToDate: number; projection: Projection };
  budgets: {
    /** Monthly USD limits of the live keys, summed (what the keys may spend this month). */
    keys: number | null;
    /** Monthly USD budgets of the access tokens, summed. */
    tokens: number | null;
  };
  top: { keys: Spender[]; tokens: Spender[]; models: Spender[] };
  attention: KeyAttention[];
  openAlerts: number | null;
  last7: { period: string; cost: number; requests: number }[];
  asOf: Date;
}

const TOP = 5;

/** The dashboard's figures: this month's spend and pace, who spends, what needs a look. */
@Injectable()
export class DashboardService {
  constructor(
    @InjectDataSource() private readonly dataSource: DataSource,
    @Inject(KEYWARD_CONFIG) private readonly config: KeywardConfig,
  ) {}

  async dashboard(options: { withAlerts: boolean }, now: Date = new Date()): Promise<Dashboard> {
    const month = costWindow(null, now);
    const thirty = lastDays(now, 30);
    const [daily, keys, tokens, models, attention, openAlerts, keyBudgets, budgets] = await Promise.all([
      this.daily(thirty.window),
      this.top('key', month),
      this.top('token', month),
      this.top('model', month),
      this.attention(now),
      options.withAlerts ? this.openAlerts() : Promise.resolve(null),
      this.dataSource.query<{ total: number | null }[]>(
        `SELECT sum(usage_limit)::float8 AS total FROM api_keys
          WHERE revoked_at IS NULL AND usage_unit = 'usd' AND usage_period = 'monthly'`,
      ),
      tokenBudgets(this.dataSource),
    ]);
    const byDay = new Map(daily.map((d) => [d.period, d]));
    const series = thirty.labels.map((period) => ({
      period,
      cost: roundUsd(byDay.get(period)?.cost ?? 0),
      requests: byDay.get(period)?.requests ?? 0,
    }));
    const monthStart = month.start.toISOString().slice(0, 10);
    const monthToDate = roundUsd(series.filter((d) => d.period >= monthStart).reduce((a, d) => a + d.cost, 0));
    const tokenMonthly = budgets.filter((b) => b.unit === 'usd' && b.period === 'monthly');
    const keyBudget = keyBudgets[0]?.total ?? null;
    const tokenBudget = tokenMonthly.length > 0 ? tokenMonthly.reduce((a, b) => a + b.limit, 0) : null;
    return {
      month,
      spend: {
        monthToDate,
        projection: project(
          series.map((d) => ({ day: d.period, value: d.cost })),
          { used: monthToDate, limit: keyBudget, now, periodEnd: month.end },
        ),
      },
      budgets: { keys: keyBudget, tokens: tokenBudget },
      // Groups that cost nothing (Keyward's own refusals among them) are nobody's spend.
      top: { keys, tokens, models },
      attention,
      openAlerts,
      last7: series.slice(-7),
      asOf: now,
    };
  }

  private async daily(window: TimeWindow) {
    return this.dataSource.query<{ period: string; cost: number; requests: number }[]>(
      `SELECT to_char(r.period_start AT TIME ZONE 'UTC', 'YYYY-MM-DD') AS period,
              sum(r.cost)::float8 AS cost, sum(r.requests)::float8 AS requests
         FROM usage_rollups r
        WHERE r.bucket = 'day' AND r.period_start >= $1 AND r.period_start < $2
        GROUP BY 1`,
      [window.start, window.end],
    );
  }

  private async top(dimension: 'key' | 'token' | 'model', window: TimeWindow): Promise<Spender[]> {
    const d = ROLLUP_DIMENSIONS[dimension];
    const rows = await this.dataSource.query<Spender[]>(
      `SELECT ${d.select}, sum(r.requests)::float8 AS requests, sum(r.cost)::float8 AS cost
         FROM usage_rollups r ${d.join}
        WHERE r.bucket = 'day' AND r.period_start >= $1 AND r.period_start < $2
        GROUP BY ${d.groupBy}
       HAVING sum(r.cost) > 0
        ORDER BY cost DESC, requests DESC
        LIMIT ${TOP}`,
      [window.start, window.end],
    );
    return rows.map((r) => ({
      id: r.id,
      label: r.label,
      provider: r.provider,
      requests: r.requests,
      cost: roundUsd(r.cost),
    }));
  }

  /** Live keys that are unhealthy, expired or expiring within the warning days. */
  private async attention(now: Date): Promise<KeyAttention[]> {
    const soon = addDays(now, this.config.expiryWarningDays);
    const rows = await this.dataSource.query<Omit<KeyAttention, 'why'>[]>(
      `SELECT id, name, provider, health, health_reason AS "healthReason", expires_at AS "expiresAt"
         FROM api_keys
        WHERE revoked_at IS NULL AND (health = 'unhealthy' OR expires_at < $1)
        ORDER BY health = 'unhealthy' DESC, expires_at NULLS LAST, name
        LIMIT 20`,
      [soon],
    );
    return rows.map((r) => ({
      ...r,
      why:
        r.health === 'unhealthy'
          ? 'unhealthy'
          : r.expiresAt && r.expiresAt.getTime() <= now.getTime()
            ? 'expired'
            : 'expiring',
    }));
  }

  /**
   * Alerts nobody has dealt with. The alerting module keeps them in `alerts` (state `open`); a
   * database without it has only the older `alert_events`, where open means not acknowledged.
   */
  private async openAlerts(): Promise<number | null> {
    const columns = await this.dataSource.query<{ table_name: string; column_name: string }[]>(
      `SELECT table_name, column_name FROM information_schema.columns
        WHERE table_schema = current_schema() AND table_name IN ('alerts', 'alert_events')`,
    );
    const has = (table: string, column: string) =>
      columns.some((c) => c.table_name === table && c.column_name === column);
    let sql: string | null = null;
    if (has('alerts', 'state')) sql = `SELECT count(*)::int AS n FROM alerts WHERE state = 'open'`;
    else if (has('alert_events', 'acknowledged_at')) {
      sql = `SELECT count(*)::int AS n FROM alert_events WHERE acknowledged_at IS NULL`;
    }
    if (!sql) return null;
    const [row] = await this.dataSource.query<{ n: number }[]>(sql);
    return row.n;
  }
}

export const daysLeftIn = (window: TimeWindow, now: Date) =>
  Math.max(0, Math.ceil((window.end.getTime() - now.getTime()) / DAY_MS));
