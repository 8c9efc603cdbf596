import { Injectable } from '@nestjs/common';
import { InjectDataSource } from '@nestjs/typeorm';
import { DataSource } from 'typeorm';
import type { UsagePeriod } from '../keys/api-key.entity';
import { nextResetAt, periodStart } from '../keys/usage-period';
import { project, type DailyPoint } from '../usage/projection';
import { addDays, costWindow, DAY_MS, dayLabel, formatUsd, startOfUtcDay } from '../usage/usage-math';
import type { AlertRule, Evaluation, Firing } from './alert.types';

/** Which subjects a batch touched; a sweep passes none and so looks at all. */
export interface Subjects {
  keyIds?: string[];
  tokenIds?: string[];
  providers?: string[];
}

/** Lifetime limits and budgets are projected this far ahead. */
const TOTAL_HORIZON_DAYS = 30;
const BURN_DAYS = 7;

const iso = (d: Date | string | null) => (d ? new Date(d).toISOString() : 'none');
const num = new Intl.NumberFormat('en-US', { maximumFractionDigits: 2 });
const amount = (value: number, unit: string) => (unit === 'usd' ? formatUsd(value) : `${num.format(value)} ${unit}`);
const periodWord = (p: string) => (p === 'never' || p === 'total' ? 'lifetime' : p);

interface LimitedSubject {
  type: 'key' | 'token';
  id: string;
  /** The budget row for tokens (a token may have one per unit and period). */
  budgetId: string | null;
  label: string;
  unit: 'tokens' | 'requests' | 'usd';
  period: UsagePeriod;
  limit: number;
  used: number;
  resetAt: Date | null;
}

/**
 * What each kind of rule finds true right now, as firings with stable dedupe keys. Pure reads:
 * storing alerts and delivering them is the evaluator's job. The subjects a rule does not watch
 * (its scope) or that a batch did not touch are left alone (`covered`).
 */
@Injectable()
export class AlertConditions {
  constructor(@InjectDataSource() private readonly dataSource: DataSource) {}

  async evaluate(rule: AlertRule, subjects: Subjects | null, now: Date): Promise<Evaluation> {
    switch (rule.kind) {
      case 'usage_threshold':
        return this.usageThreshold(rule, subjects);
      case 'projected_overrun':
        return this.projectedOverrun(rule, subjects, now);
      case 'cost_threshold':
        return this.costThreshold(rule, now);
      case 'error_rate':
        return this.errorRate(rule, now);
      case 'key_invalid':
        return this.keyInvalid(rule, subjects);
      case 'expiring':
        return this.expiring(rule, now);
      case 'rotation_due':
        return this.rotationDue(rule, now);
      case 'rotation_failed':
        return this.rotationFailed(rule);
      case 'no_healthy_key':
        return this.noHealthyKey(rule);
    }
  }

  // ---- limits and budgets -----------------------------------------------------------------------

  /** Keys with a limit and tokens with a budget that the rule watches (and the batch touched). */
  async limitedSubjects(rule: AlertRule, subjects: Subjects | null): Promise<LimitedSubject[]> {
    const out: LimitedSubject[] = [];
    const scopedKeys = rule.scopeType === 'key' ? [rule.scopeId!] : rule.scopeType === 'all' ? null : [];
    const scopedTokens = rule.scopeType === 'token' ? [rule.scopeId!] : rule.scopeType === 'all' ? null : [];
    const keyIds = intersect(scopedKeys, subjects ? (subjects.keyIds ?? []) : null);
    const tokenIds = intersect(scopedTokens, subjects ? (subjects.tokenIds ?? []) : null);

    if (keyIds === null || keyIds.length > 0) {
      const rows: Record<string, string | null>[] = await this.dataSource.query(
        `SELECT id, provider, name, secret_hint, usage_limit, usage_unit, usage_period, reset_at,
                CASE WHEN reset_at IS NOT NULL AND reset_at <= now() THEN 0 ELSE usage_current END AS used
           FROM api_keys WHERE active AND usage_limit IS NOT NULL AND ($1::uuid[] IS NULL OR id = ANY($1))`,
        [keyIds],
      );
      for (const r of rows) {
        out.push({
          type: 'key',
          id: r.id!,
          budgetId: null,
          label: `${r.provider} key ${r.name} (${r.secret_hint})`,
          unit: r.usage_unit as LimitedSubject['unit'],
          period: r.usage_period as UsagePeriod,
          limit: Number(r.usage_limit),
          used: Number(r.used),
          resetAt: r.reset_at ? new Date(r.reset_at) : null,
        });
      }
    }
    if (tokenIds === null || tokenIds.length > 0) {
      const rows: Record<string, string | null>[] = await this.dataSource.query(
        `SELECT b.id, b.access_token_id, t.name, t.token_hint, b.unit, b.period, b."limit", b.reset_at,
                CASE WHEN b.reset_at IS NOT NULL AND b.reset_at <= now() THEN 0 ELSE b.used END AS used
           FROM access_token_budgets b JOIN access_tokens t ON t.id = b.access_token_id
          WHERE t.revoked_at IS NULL AND ($1::uuid[] IS NULL OR b.access_token_id = ANY($1))`,
        [tokenIds],
      );
      for (const r of rows) {
        out.push({
          type: 'token',
          id: r.access_token_id!,
          budgetId: r.id,
          label: `access token ${r.name} (${r.token_hint})`,
          unit: r.unit as LimitedSubject['unit'],
          period: (r.period === 'total' ? 'never' : r.period) as UsagePeriod,
          limit: Number(r.limit),
          used: Number(r.used),
          resetAt: r.reset_at ? new Date(r.reset_at) : null,
        });
      }
    }
    return out;
  }

  private async usageThreshold(rule: AlertRule, subjects: Subjects | null): Promise<Evaluation> {
    const firing: Firing[] = [];
    const covered: string[] = [];
    for (const s of await this.limitedSubjects(rule, subjects)) {
      const base = subjectKey(s);
      covered.push(`${base}:`);
      const percent = (s.used / s.limit) * 100;
      for (const threshold of rule.params.thresholds ?? []) {
        if (percent < threshold) continue;
        firing.push({
          dedupeKey: `${base}:${threshold}`,
          subjectType: s.type,
          subjectId: s.id,
          message: `The ${s.label} has used ${Math.floor(percent)} % of its ${periodWord(s.period)} ${s.type === 'key' ? 'limit' : 'budget'} (${amount(s.used, s.unit)} of ${amount(s.limit, s.unit)}), past the ${threshold} % threshold.`,
          details: {
            threshold,
            percent: Math.round(percent * 100) / 100,
            used: s.used,
            limit: s.limit,
            unit: s.unit,
            period: s.period,
            resetAt: s.resetAt,
          },
        });
      }
    }
    return { firing, covered };
  }

  private async projectedOverrun(rule: AlertRule, subjects: Subjects | null, now: Date): Promise<Evaluation> {
    const firing: Firing[] = [];
    const covered: string[] = [];
    const keep: string[] = [];
    for (const s of await this.limitedSubjects(rule, subjects)) {
      const start = periodStart(s.period, now);
      const periodEnd = nextResetAt(s.period, now) ?? addDays(now, TOTAL_HORIZON_DAYS);
      const base = subjectKey(s);
      // One warning per period: a projection that wobbles back under the limit does not clear it.
      const dedupeKey = `${base}:${start ? dayLabel(start) : 'total'}`;
      covered.push(`${base}:`);
      keep.push(dedupeKey);
      const points = await this.dailyPoints(s, start, now);
      const projection = project(points, { used: s.used, limit: s.limit, now, periodEnd });
      if (!projection.exceedsOn) continue;
      const noun = s.type === 'key' ? 'limit' : 'budget';
      firing.push({
        dedupeKey,
        subjectType: s.type,
        subjectId: s.id,
        message: `The ${s.label} is on pace to exceed its ${periodWord(s.period)} ${noun} of ${amount(s.limit, s.unit)} on ${projection.exceedsOn} (${amount(s.used, s.unit)} used, about ${amount(projection.burnRatePerDay, s.unit)} a day).`,
        details: {
          exceedsOn: projection.exceedsOn,
          burnRatePerDay: projection.burnRatePerDay,
          projectedAtPeriodEnd: projection.projectedAtPeriodEnd,
          used: s.used,
          limit: s.limit,
          unit: s.unit,
          period: s.period,
          periodEnd,
        },
      });
    }
    return { firing, covered, keep };
  }

  /** Zero-filled days of this period (the last seven at most), in the limit's unit. */
  private async dailyPoints(s: LimitedSubject, start: Date | null, now: Date): Promise<DailyPoint[]> {
    const today = startOfUtcDay(now);
    const weekAgo = addDays(today, -(BURN_DAYS - 1));
    const from = start && start > weekAgo ? startOfUtcDay(start) : weekAgo;
    const measure =
      s.unit === 'tokens'
        ? 'sum(total_tokens)'
        : s.unit === 'requests'
          ? 'count(*) FILTER (WHERE success)'
          : 'sum(cost)';
    const rows: { day: string; value: string }[] = await this.dataSource.query(
      `SELECT to_char(("timestamp" AT TIME ZONE 'UTC')::date, 'YYYY-MM-DD') AS day, ${measure} AS value
         FROM usage_events WHERE ${s.type === 'key' ? 'key_id' : 'access_token_id'} = $1 AND "timestamp" >= $2
        GROUP BY 1`,
      [s.id, from],
    );
    const byDay = new Map(rows.map((r) => [r.day, Number(r.value)]));
    const days = Math.round((today.getTime() - from.getTime()) / DAY_MS) + 1;
    return Array.from({ length: days }, (_, i) => {
      const day = dayLabel(addDays(from, i));
      return { day, value: byDay.get(day) ?? 0 };
    });
  }

  // ---- traffic ----------------------------------------------------------------------------------

  private async costThreshold(rule: AlertRule, now: Date): Promise<Evaluation> {
    const window = costWindow(rule.params.period ?? 'monthly', now);
    // Periods start at UTC midnight, so the daily rollups (written with the events) add up to
    // the period's spend without scanning its events; tokens have no rollup and use the events.
    const [{ cost }] =
      rule.scopeType === 'token'
        ? await this.dataSource.query(
            `SELECT coalesce(sum(cost), 0) AS cost FROM usage_events
              WHERE "timestamp" >= $1 AND "timestamp" < $2 AND access_token_id = $3`,
            [window.start, window.end, rule.scopeId],
          )
        : await this.dataSource.query(
            `SELECT coalesce(sum(cost), 0) AS cost FROM usage_rollups
              WHERE bucket = 'day' AND period_start >= $1 AND period_start < $2 AND ${scopeFilter(rule, '$3')}`,
            [window.start, window.end, rule.scopeId],
          );
    const spent = Number(cost);
    const limit = rule.params.amountUsd ?? Infinity;
    if (spent < limit) return { firing: [], covered: [''] };
    return {
      covered: [''],
      firing: [
        {
          dedupeKey: `cost:${dayLabel(window.start)}`,
          ...scopeSubject(rule),
          message: `Spend ${scopeWords(rule)} reached ${formatUsd(spent)} this ${periodNoun(rule.params.period)}, past ${formatUsd(limit)}.`,
          details: { spentUsd: spent, amountUsd: limit, period: rule.params.period, periodStart: window.start },
        },
      ],
    };
  }

  private async errorRate(rule: AlertRule, now: Date): Promise<Evaluation> {
    const minutes = rule.params.windowMinutes ?? 5;
    const [row] = await this.dataSource.query(
      `SELECT count(*)::int AS requests, count(*) FILTER (WHERE NOT success)::int AS errors FROM usage_events
        WHERE "timestamp" > $1 AND ${scopeFilter(rule, '$2')}`,
      [new Date(now.getTime() - minutes * 60_000), rule.scopeId],
    );
    const percent = row.requests > 0 ? (row.errors / row.requests) * 100 : 0;
    const holds = row.requests >= (rule.params.minRequests ?? 1) && percent >= (rule.params.errorRatePercent ?? 100);
    if (!holds) return { firing: [], covered: [''] };
    return {
      covered: [''],
      firing: [
        {
          dedupeKey: 'errors',
          ...scopeSubject(rule),
          message: `${Math.round(percent)} % of requests ${scopeWords(rule)} failed in the last ${minutes} min (${row.errors} of ${row.requests}).`,
          details: { errors: row.errors, requests: row.requests, percent, windowMinutes: minutes },
        },
      ],
    };
  }

  // ---- keys -------------------------------------------------------------------------------------

  private async keyInvalid(rule: AlertRule, subjects: Subjects | null): Promise<Evaluation> {
    const rows = await this.keysWhere(rule, `health = 'unhealthy'`, subjects?.keyIds ?? null);
    return {
      covered: subjects?.keyIds ? subjects.keyIds.map((id) => `key:${id}`) : [''],
      firing: rows.map((k) => ({
        dedupeKey: `key:${k.id}`,
        subjectType: 'key' as const,
        subjectId: k.id,
        message: `The ${k.provider} key ${k.name} (${k.secret_hint}) was refused as invalid${k.health_reason ? `: ${k.health_reason}` : ''}; it is out of the pool until it verifies again.`,
        details: { provider: k.provider, reason: k.health_reason, since: k.health_changed_at },
      })),
    };
  }

  private async expiring(rule: AlertRule, now: Date): Promise<Evaluation> {
    const horizon = addDays(now, rule.params.withinDays ?? 7);
    const firing: Firing[] = [];
    if (rule.scopeType !== 'token') {
      const keys = await this.keysWhere(rule, `expires_at IS NOT NULL AND expires_at <= $3`, null, [horizon]);
      for (const k of keys) {
        firing.push({
          dedupeKey: `key:${k.id}:${iso(k.expires_at)}`,
          subjectType: 'key',
          subjectId: k.id,
          message: `The ${k.provider} key ${k.name} (${k.secret_hint}) ${expiryWords(k.expires_at!, now)}.`,
          details: { provider: k.provider, expiresAt: k.expires_at },
        });
      }
    }
    if (rule.scopeType === 'all' || rule.scopeType === 'token') {
      const tokens: Record<string, string>[] = await this.dataSource.query(
        `SELECT id, name, token_hint, expires_at FROM access_tokens
          WHERE revoked_at IS NULL AND expires_at IS NOT NULL AND expires_at <= $1 AND ($2::uuid IS NULL OR id = $2)`,
        [horizon, rule.scopeType === 'token' ? rule.scopeId : null],
      );
      for (const t of tokens) {
        firing.push({
          dedupeKey: `token:${t.id}:${iso(t.expires_at)}`,
          subjectType: 'token',
          subjectId: t.id,
          message: `The access token ${t.name} (${t.token_hint}) ${expiryWords(t.expires_at, now)}.`,
          details: { expiresAt: t.expires_at },
        });
      }
    }
    return { firing, covered: [''] };
  }

  private async rotationDue(rule: AlertRule, now: Date): Promise<Evaluation> {
    const horizon = addDays(now, rule.params.withinDays ?? 0);
    const keys = await this.keysWhere(rule, `next_rotation_at IS NOT NULL AND next_rotation_at <= $3`, null, [horizon]);
    return {
      covered: [''],
      firing: keys.map((k) => ({
        dedupeKey: `key:${k.id}:${iso(k.next_rotation_at)}`,
        subjectType: 'key' as const,
        subjectId: k.id,
        message: `The ${k.provider} key ${k.name} (${k.secret_hint}) is due for rotation on ${dayLabel(new Date(k.next_rotation_at!))}.`,
        details: { provider: k.provider, nextRotationAt: k.next_rotation_at, schedule: k.rotation_schedule },
      })),
    };
  }

  private async rotationFailed(rule: AlertRule): Promise<Evaluation> {
    const rows: Record<string, string>[] = await this.dataSource.query(
      `SELECT * FROM (
         SELECT DISTINCT ON (r.key_id) r.id AS rotation_id, r.status, r.error, r.created_at, k.id, k.provider, k.name, k.secret_hint
           FROM key_rotations r JOIN api_keys k ON k.id = r.key_id
          WHERE k.active AND ${keyScope(rule, 'k')}
          ORDER BY r.key_id, r.created_at DESC) latest
        WHERE status IN ('failed', 'retire_failed', 'needs_admin')`,
      [rule.scopeId],
    );
    return {
      covered: [''],
      firing: rows.map((r) => ({
        dedupeKey: `key:${r.id}:${r.rotation_id}`,
        subjectType: 'key' as const,
        subjectId: r.id,
        message:
          r.status === 'needs_admin'
            ? `The ${r.provider} key ${r.name} (${r.secret_hint}) is due for rotation and needs an admin to bring the new key.`
            : `Rotating the ${r.provider} key ${r.name} (${r.secret_hint}) failed${r.error ? `: ${r.error}` : ''}.`,
        details: { rotationId: r.rotation_id, status: r.status, at: r.created_at },
      })),
    };
  }

  private async noHealthyKey(rule: AlertRule): Promise<Evaluation> {
    const rows: { provider: string }[] = await this.dataSource.query(
      `SELECT provider FROM api_keys k WHERE ${keyScope(rule, 'k')} GROUP BY provider
        HAVING count(*) FILTER (WHERE active AND health = 'healthy' AND (expires_at IS NULL OR expires_at > now())) = 0`,
      [rule.scopeId],
    );
    return {
      covered: [''],
      firing: rows.map((r) => ({
        dedupeKey: `provider:${r.provider}`,
        subjectType: 'provider' as const,
        subjectId: r.provider,
        message: `No healthy ${r.provider} key is left: requests for ${r.provider} fail until a key is added or verifies again.`,
        details: { provider: r.provider },
      })),
    };
  }

  private keysWhere(
    rule: AlertRule,
    condition: string,
    onlyIds: string[] | null,
    extra: unknown[] = [],
  ): Promise<Record<string, string | null>[]> {
    // $1 is the scope id, $2 the keys a batch touched; the condition's own parameters follow.
    const params: unknown[] = [rule.scopeId, onlyIds, ...extra];
    return this.dataSource.query(
      `SELECT id, provider, name, secret_hint, health_reason, health_changed_at, expires_at, next_rotation_at, rotation_schedule
         FROM api_keys k WHERE active AND ${keyScope(rule, 'k')} AND ($2::uuid[] IS NULL OR id = ANY($2)) AND ${condition}`,
      params,
    );
  }
}

const subjectKey = (s: LimitedSubject) => (s.type === 'key' ? `key:${s.id}` : `token:${s.id}:${s.budgetId}`);

function intersect(scope: string[] | null, touched: string[] | null): string[] | null {
  if (scope === null) return touched;
  if (touched === null) return scope;
  return scope.filter((id) => touched.includes(id));
}

/** The rule's scope over usage_events, with its id as parameter `param`. */
function scopeFilter(rule: AlertRule, param: string): string {
  switch (rule.scopeType) {
    case 'provider':
      return `provider = ${param}::text`;
    case 'key':
      return `key_id = ${param}::uuid`;
    case 'token':
      return `access_token_id = ${param}::uuid`;
    default:
      return `(${param}::text IS NULL)`;
  }
}

/** The rule's scope over api_keys (`$1` is the scope id). */
function keyScope(rule: AlertRule, alias: string): string {
  switch (rule.scopeType) {
    case 'provider':
      return `${alias}.provider = $1::text`;
    case 'key':
      return `${alias}.id = $1::uuid`;
    default:
      return `($1::text IS NULL)`;
  }
}

function scopeSubject(rule: AlertRule): Pick<Firing, 'subjectType' | 'subjectId'> {
  return rule.scopeType === 'all'
    ? { subjectType: 'all', subjectId: null }
    : { subjectType: rule.scopeType, subjectId: rule.scopeId };
}

function scopeWords(rule: AlertRule): string {
  switch (rule.scopeType) {
    case 'provider':
      return `for ${rule.scopeId}`;
    case 'key':
      return `on key ${rule.scopeId}`;
    case 'token':
      return `of access token ${rule.scopeId}`;
    default:
      return 'across all providers';
  }
}

const periodNoun = (p: string | undefined) => (p === 'daily' ? 'day' : p === 'weekly' ? 'week' : 'month');

function expiryWords(expiresAt: string, now: Date): string {
  const at = new Date(expiresAt);
  if (at <= now) return `expired on ${dayLabel(at)}`;
  const days = Math.ceil((at.getTime() - now.getTime()) / DAY_MS);
  return `expires on ${dayLabel(at)}, in ${days} day${days === 1 ? '' : 's'}`;
}
