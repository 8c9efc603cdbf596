import { Controller, Get, Param, Query, Req, Res } from '@nestjs/common';
import type { Request, Response } from 'express';
import { CheckPolicies } from '../auth/decorators';
import { keyId } from '../keys/keys.controller';
import { UsageReportQuery } from './dto/usage-report.query';
import { TrendsQuery } from './dto/trends.query';
import { usageReportCsv } from './usage-csv';
import { dayLabel, addDays } from './usage-math';
import { UsageReportsService } from './usage-reports.service';
import { UsageTrendsService } from './usage-trends.service';

/** CSV when asked for by `format=csv` or an Accept header that prefers it over JSON. */
export function wantsCsv(req: Request, format: string | undefined): boolean {
  if (format) return format === 'csv';
  return req.accepts(['application/json', 'text/csv']) === 'text/csv';
}

/** The spec's usage endpoints: one key's usage and costs, and reports across keys. */
@Controller('api/admin')
export class UsageController {
  constructor(
    private readonly reports: UsageReportsService,
    private readonly trends: UsageTrendsService,
  ) {}

  /** The spec's GetKeyUsageResponse: counter against limit, 30 days, 12 months, costs. */
  @Get('api-keys/:id/usage')
  @CheckPolicies((ability) => ability.can('read', 'Usage'))
  keyUsage(@Param('id', keyId) id: string) {
    return this.reports.keyUsage(id);
  }

  /**
   * Usage across keys from the rollups, grouped by key, provider, model, access token or day,
   * with totals; as CSV for `format=csv` or `Accept: text/csv`.
   */
  @Get('usage')
  @CheckPolicies((ability) => ability.can('read', 'Usage'))
  async report(@Query() query: UsageReportQuery, @Req() req: Request, @Res({ passthrough: true }) res: Response) {
    const report = await this.reports.report(query);
    res.setHeader('Vary', 'Accept');
    if (!wantsCsv(req, query.format)) return report;
    const last = dayLabel(addDays(report.to, -1));
    res.setHeader('Content-Type', 'text/csv; charset=utf-8');
    res.setHeader(
      'Content-Disposition',
      `attachment; filename="usage-by-${report.groupBy}-${dayLabel(report.from)}_${last}.csv"`,
    );
    return usageReportCsv(report);
  }

  /** Per model or access token: 30 days, a linear trend, burn rate, and when a limit or budget runs out. */
  @Get('usage/trends')
  @CheckPolicies((ability) => ability.can('read', 'Usage'))
  trendsOf(@Query() query: TrendsQuery) {
    return this.trends.trends(query.groupBy);
  }
}
