import { Controller, Get, Param, Query } from '@nestjs/common';
import { CheckPolicies } from '../auth/decorators';
import { keyId } from '../keys/keys.controller';
import { UsageReportQuery } from './dto/usage-report.query';
import { UsageReportsService } from './usage-reports.service';

/** The spec's usage endpoints: one key's usage and costs, and reports across keys. */
@Controller('api/admin')
export class UsageController {
  constructor(private readonly reports: UsageReportsService) {}

  /** The spec's GetKeyUsageResponse: counter against limit, 30 days, 12 months, costs. */
  @Get('api-keys/:id/usage')
  @CheckPolicies((ability) => ability.can('read', 'Usage'))
  keyUsage(@Param('id', keyId) id: string) {
    return this.reports.keyUsage(id);
  }

  /** Usage across keys from the rollups, grouped by key, provider, model or day, with totals. */
  @Get('usage')
  @CheckPolicies((ability) => ability.can('read', 'Usage'))
  report(@Query() query: UsageReportQuery) {
    return this.reports.report(query);
  }
}
