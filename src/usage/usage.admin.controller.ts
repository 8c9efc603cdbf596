import { Controller, Get, Param, Query, Req, Res } from '@nestjs/common';
import type { Request, Response } from 'express';
import { CheckPolicies } from '../auth/decorators';
import { validateForm } from '../common/validation';
import { render } from '../common/views';
import { usageText } from '../keys/keys.admin.controller';
import { keyId } from '../keys/keys.controller';
import { ProviderRegistry } from '../plugin-system/provider-registry';
import { usageChartSvg } from './chart';
import { UsagePageQuery } from './dto/usage-page.query';
import { type KeyCost, UsageReportsService } from './usage-reports.service';
import {
  addDays,
  dayLabel,
  errorRate,
  formatCount,
  formatPercent,
  formatUsd,
  PROJECTION_FORMULA,
  RANGE_LABELS,
  sumMetrics,
  type TimeWindow,
  USAGE_RANGES,
  type UsageTotals,
} from './usage-math';

/** An error rate from which a row is flagged. */
const HIGH_ERROR_RATE = 0.05;

const PERIOD_LABELS: Record<KeyCost['period'], string> = {
  daily: 'today',
  weekly: 'this week',
  monthly: 'this month',
  month: 'this month (no periodic limit)',
};

const SEVERITY_CLASSES: Record<string, string> = { critical: 'status-bad', warning: 'status-warn', info: 'muted' };

const str = (value: unknown): string | undefined => (typeof value === 'string' ? value : undefined);

/** `2026-11-01 – 2026-11-30 (UTC)`: the days of a half-open window. */
const windowText = (w: TimeWindow) => {
  const first = dayLabel(w.start);
  const last = dayLabel(addDays(w.end, -1));
  return first === last ? `${first} (UTC)` : `${first} – ${last} (UTC)`;
};

/** A metrics row as table cells: numbers formatted, a high error rate flagged. */
function cells(m: UsageTotals & { errorRate: number }) {
  return {
    requests: formatCount(m.requests),
    tokens: formatCount(m.tokens),
    inputTokens: formatCount(m.inputTokens),
    outputTokens: formatCount(m.outputTokens),
    errors: formatCount(m.errors),
    errorRate: formatPercent(m.errorRate),
    errorClass: m.errorRate >= HIGH_ERROR_RATE ? 'status-bad' : '',
    cost: formatUsd(m.cost),
  };
}

/**
 * Console → Usage: the spec's UsageMonitoring (UsageMetrics, CostTracking, recent alerts) and a
 * per-key usage section. Same service as the JSON API. The page polls `/admin/usage/live` every
 * five seconds through htmx; its filters are a plain GET form, so they work without JavaScript.
 */
@Controller('admin/usage')
export class UsageAdminController {
  constructor(
    private readonly reports: UsageReportsService,
    private readonly registry: ProviderRegistry,
  ) {}

  @Get()
  @CheckPolicies((ability) => ability.can('read', 'Usage'))
  async index(@Req() req: Request, @Res() res: Response, @Query() raw: Record<string, unknown>) {
    await this.overview(req, res, raw);
  }

  /** What the page polls: the same answer, for htmx just the live part. */
  @Get('live')
  @CheckPolicies((ability) => ability.can('read', 'Usage'))
  async live(@Req() req: Request, @Res() res: Response, @Query() raw: Record<string, unknown>) {
    await this.overview(req, res, raw);
  }

  /** One key's usage against its limit, 30 days and costs: a section the key page can pull in. */
  @Get('keys/:id')
  @CheckPolicies((ability) => ability.can('read', 'Usage'))
  async keyUsage(@Req() req: Request, @Res() res: Response, @Param('id', keyId) id: string) {
    const { key, usage } = await this.reports.keyOverview(id);
    const limit = usage.usage.limit;
    const total = sumMetrics(usage.history.daily);
    render(
      req,
      res,
      'usage/key',
      {
        title: `Usage of ${key.name}`,
        nav: 'usage',
        key: { id: key.id, name: key.name, provider: key.provider, hint: key.secretHint },
        usage: {
          ...usage.usage,
          text: usageText({
            ...usage.usage,
            unit: usage.usage.unit ?? undefined,
            period: usage.usage.period ?? undefined,
          }),
          high: limit === null ? null : limit * 0.8,
          over: limit !== null && usage.usage.current >= limit,
        },
        last30: cells({ ...total, errorRate: errorRate(total.errors, total.requests) }),
        costs: {
          current: formatUsd(usage.costs.current),
          projected: formatUsd(usage.costs.projected),
          window: windowText(usage.costs.period),
          formula: usage.costs.formula,
        },
        chart: usageChartSvg(usage.history.daily, {
          id: `key-usage-chart-${key.id}`,
          title: `${key.name}: requests and cost per day, last 30 days`,
        }),
        asOf: usage.costs.asOf,
      },
      { partial: 'usage/key' },
    );
  }

  private async overview(req: Request, res: Response, raw: Record<string, unknown>) {
    const given: Record<string, string> = {};
    for (const name of ['range', 'provider']) {
      const value = str(raw[name])?.trim();
      if (value) given[name] = value;
    }
    const { dto, errors } = await validateForm(UsagePageQuery, given);
    // Invalid filters show the default view with the message, and a 400.
    const filters = errors.length > 0 ? new UsagePageQuery() : dto;
    const data = await this.reports.overview({
      range: filters.range,
      provider: filters.provider ?? null,
      withAlerts: req.ability?.can('read', 'Alert') ?? false,
    });
    const query = new URLSearchParams({
      range: filters.range,
      ...(filters.provider ? { provider: filters.provider } : {}),
    });
    const chartTitle = `Requests and cost per day, last 30 days${filters.provider ? ` (${filters.provider})` : ''}`;
    render(
      req,
      res,
      'usage/index',
      {
        title: 'Usage',
        nav: 'usage',
        filters: { range: filters.range, provider: filters.provider ?? '' },
        filterErrors: errors.flatMap((e) => e.messages),
        ranges: USAGE_RANGES.map((value) => ({ value, label: RANGE_LABELS[value], selected: value === filters.range })),
        providers: this.registry.loaded().map(({ plugin }) => ({
          id: plugin.config.id,
          name: plugin.config.name,
          selected: plugin.config.id === filters.provider,
        })),
        liveUrl: `/admin/usage/live?${query.toString()}`,
        rangeLabel: RANGE_LABELS[filters.range],
        rangeWindow: windowText(data.window),
        totals: cells(data.byProvider.totals),
        byKey: data.byKey.rows.map((r) => ({
          keyId: r.keyId,
          keyName: r.keyName ?? 'deleted key',
          deleted: r.keyName === null,
          provider: r.provider,
          ...cells(r),
        })),
        byProvider: data.byProvider.rows.map((r) => ({ provider: r.provider, ...cells(r) })),
        keyCosts: data.costs.keys.map((k) => ({
          keyId: k.keyId,
          keyName: k.keyName,
          provider: k.provider,
          revoked: k.revoked,
          periodLabel: PERIOD_LABELS[k.period],
          window: windowText(k.window),
          current: formatUsd(k.current),
          projected: formatUsd(k.projected),
          budget: k.budget === null ? null : formatUsd(k.budget),
          overBudget: k.budget !== null && k.projected > k.budget,
        })),
        modelCosts: data.costs.models.map((m) => ({
          provider: m.provider,
          model: m.model ?? 'unknown model',
          current: formatUsd(m.current),
          projected: formatUsd(m.projected),
        })),
        monthWindow: windowText(data.costs.month),
        formula: PROJECTION_FORMULA,
        chart: usageChartSvg(data.daily, { id: 'usage-chart', title: chartTitle }),
        showAlerts: data.alerts !== null,
        alerts: (data.alerts ?? []).map((a) => ({
          ...a,
          createdIso: a.createdAt instanceof Date ? a.createdAt.toISOString() : String(a.createdAt),
          severityClass: SEVERITY_CLASSES[String(a.severity)] ?? '',
        })),
        asOf: data.asOf,
      },
      { partial: 'usage/live', status: errors.length > 0 ? 400 : 200 },
    );
  }
}
