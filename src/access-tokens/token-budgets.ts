import { Injectable } from '@nestjs/common';
import { InjectDataSource } from '@nestjs/typeorm';
import { DataSource, EntityManager } from 'typeorm';
import type { FieldError } from '../common/problem';
import { LIMITS_CHANNEL, LimitsService } from '../limits/limits.service';
import { BUDGET_PERIODS, type BudgetPeriod, LIMIT_UNITS, type LimitUnit } from '../limits/limits.types';
import { periodEnd, rolled } from '../limits/period';

export interface BudgetInput {
  unit: LimitUnit;
  period: BudgetPeriod;
  limit: number;
}

/** A budget as the API and the console show it: spend against budget, like a key's limit. */
export interface BudgetView {
  id: string;
  unit: LimitUnit;
  period: BudgetPeriod;
  limit: number;
  /** Settled usage in the current period. */
  used: number;
  /** Held by calls in flight (their worst case until they settle). */
  reserved: number;
  remaining: number;
  /** used / limit, in percent (may pass 100 when reported usage overran it). */
  percent: number;
  resetAt: string | null;
}

interface BudgetRow {
  id: string;
  access_token_id: string;
  unit: LimitUnit;
  period: BudgetPeriod;
  limit: string;
  used: string;
  reserved: string;
  reset_at: Date | null;
}

const order = (b: { unit: LimitUnit; period: BudgetPeriod }) =>
  LIMIT_UNITS.indexOf(b.unit) * 10 + BUDGET_PERIODS.indexOf(b.period);

/**
 * The budgets of access tokens (`access_token_budgets`). Their counters are LimitsService's:
 * this reads them for pages and writes the set an admin chose; replacing a set keeps the spend
 * of each budget whose unit and period stay, so raising "$100 a month" to "$200 a month" does not
 * forget what the month has spent.
 */
@Injectable()
export class TokenBudgets {
  constructor(
    @InjectDataSource() private readonly dataSource: DataSource,
    private readonly limits: LimitsService,
  ) {}

  /** Field errors of a set: one budget per unit and period. */
  check(budgets: BudgetInput[], field = 'budgets'): FieldError[] {
    const seen = new Map<string, number>();
    const errors: FieldError[] = [];
    budgets.forEach((b, i) => {
      const key = `${b.unit}/${b.period}`;
      const first = seen.get(key);
      if (first !== undefined) {
        errors.push({
          field: `${field}[${i}]`,
          messages: [`budgets[${first}] is already a ${b.period} ${b.unit} budget; set one per unit and period`],
        });
      } else {
        seen.set(key, i);
      }
    });
    return errors;
  }

  /** Makes `budgets` the token's set, inside the caller's transaction. Returns every id touched. */
  async replace(manager: EntityManager, accessTokenId: string, budgets: BudgetInput[]): Promise<string[]> {
    const removed = await manager.query<{ id: string }[]>(
      `DELETE FROM access_token_budgets
        WHERE access_token_id = $1
          AND NOT ((unit, period) IN (SELECT * FROM unnest($2::text[], $3::text[])))
        RETURNING id`,
      [accessTokenId, budgets.map((b) => b.unit), budgets.map((b) => b.period)],
    );
    const kept: { id: string }[] = [];
    for (const b of budgets) {
      const [row] = await manager.query<{ id: string }[]>(
        `INSERT INTO access_token_budgets (access_token_id, unit, period, "limit", reset_at)
         VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (access_token_id, unit, period) DO UPDATE SET "limit" = EXCLUDED."limit"
         RETURNING id`,
        [accessTokenId, b.unit, b.period, b.limit, periodEnd(b.period)],
      );
      kept.push(row);
    }
    // Every instance reads its limits again when this commits.
    await manager.query(`SELECT pg_notify($1, $2)`, [LIMITS_CHANNEL, accessTokenId]);
    return [...removed, ...kept].map((r) => r.id);
  }

  /** After the transaction committed: counters everywhere start from the new set. */
  async changed(ids: string[]): Promise<void> {
    await this.limits.budgetsChanged(ids);
  }

  /** Budgets of each token, in a stable order (tokens, requests, USD; day to total). */
  async of(accessTokenIds: string[]): Promise<Map<string, BudgetView[]>> {
    const out = new Map<string, BudgetView[]>();
    if (accessTokenIds.length === 0) return out;
    const rows = await this.dataSource.query<BudgetRow[]>(
      `SELECT id, access_token_id, unit, period, "limit", used, reserved, reset_at
         FROM access_token_budgets WHERE access_token_id = ANY($1::uuid[])`,
      [accessTokenIds],
    );
    // With Redis the live counters are there; the rows trail them by the settle queue.
    const live = await this.limits.liveLevels(rows.map((r) => `budget:${r.id}`));
    const now = new Date();
    for (const r of rows.sort((a, b) => order(a) - order(b))) {
      const level = live.get(`budget:${r.id}`);
      const current = rolled(level?.used ?? Number(r.used), r.reset_at, r.period, now);
      const limit = Number(r.limit);
      const reserved = level?.reserved ?? Number(r.reserved);
      const view: BudgetView = {
        id: r.id,
        unit: r.unit,
        period: r.period,
        limit,
        used: round(current.used),
        reserved: round(reserved),
        remaining: round(Math.max(0, limit - current.used - reserved)),
        percent: Math.round((current.used / limit) * 1000) / 10,
        resetAt: current.resetAt?.toISOString() ?? null,
      };
      const list = out.get(r.access_token_id) ?? [];
      list.push(view);
      out.set(r.access_token_id, list);
    }
    return out;
  }
}

const round = (n: number) => Math.round(n * 1e6) / 1e6;
