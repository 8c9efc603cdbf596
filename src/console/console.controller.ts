import { Controller, Get, Inject, Req, Res } from '@nestjs/common';
import type { Request, Response } from 'express';
import { AuditService } from '../audit/audit.service';
import { CheckPolicies } from '../auth/decorators';
import { render } from '../common/views';
import { RUNTIME_INFO, type RuntimeInfo } from '../runtime';
import { UsersService } from '../auth/users/users.service';
import { sparklineSvg } from '../usage/sparkline';
import { formatCount, formatUsd, addDays, dayLabel } from '../usage/usage-math';
import { DashboardService, daysLeftIn, type Spender } from './dashboard.service';

const spenders = (rows: Spender[], link: (r: Spender) => string | null) =>
  rows.map((r) => ({
    label: r.label,
    provider: r.provider,
    cost: formatUsd(r.cost),
    requests: formatCount(r.requests),
    link: link(r),
  }));

/** Console pages that belong to no single feature: the dashboard and section landings. */
@Controller('admin')
export class ConsoleController {
  constructor(
    private readonly users: UsersService,
    private readonly audit: AuditService,
    private readonly dashboards: DashboardService,
    @Inject(RUNTIME_INFO) private readonly runtime: RuntimeInfo,
  ) {}

  @Get()
  @CheckPolicies((ability) => ability.can('read', 'Dashboard'))
  async dashboard(@Req() req: Request, @Res() res: Response) {
    const canReadAudit = req.ability?.can('read', 'AuditLog') ?? false;
    const canReadUsage = req.ability?.can('read', 'Usage') ?? false;
    const canReadTokens = req.ability?.can('read', 'AccessToken') ?? false;
    const [userCount, recent, d] = await Promise.all([
      this.users.count(),
      canReadAudit ? this.audit.list({ page: 1, pageSize: 8 }) : Promise.resolve(null),
      this.dashboards.dashboard({ withAlerts: req.ability?.can('read', 'Alert') ?? false }),
    ]);
    const p = d.spend.projection;
    const budget = d.budgets.keys;
    render(req, res, 'console/dashboard', {
      title: 'Dashboard',
      nav: 'dashboard',
      canReadUsage,
      month: `${dayLabel(d.month.start)} – ${dayLabel(addDays(d.month.end, -1))}`,
      daysLeft: daysLeftIn(d.month, d.asOf),
      spend: {
        monthToDate: formatUsd(d.spend.monthToDate),
        projected: formatUsd(p.projectedAtPeriodEnd),
        burnRate: formatUsd(p.burnRatePerDay),
        keyBudget: budget === null ? null : formatUsd(budget),
        tokenBudget: d.budgets.tokens === null ? null : formatUsd(d.budgets.tokens),
        overBudget: budget !== null && p.projectedAtPeriodEnd > budget,
        exceedsOn: p.exceedsOn,
      },
      topKeys: spenders(d.top.keys, (r) => (canReadUsage ? `/admin/usage/keys/${r.id}` : null)),
      topTokens: spenders(d.top.tokens, (r) =>
        canReadUsage && canReadTokens && r.id !== 'none' ? `/admin/usage/tokens/${r.id}` : null,
      ),
      topModels: spenders(d.top.models, () => null),
      attention: d.attention.map((k) => ({
        ...k,
        label: k.why === 'unhealthy' ? 'unhealthy' : k.why === 'expired' ? 'expired' : 'expiring',
        cssClass: k.why === 'expiring' ? 'status-warn' : 'status-bad',
      })),
      openAlerts: d.openAlerts,
      sparkline: sparklineSvg(d.last7, { id: 'dashboard-spark', title: 'Cost per day, last 7 days' }),
      last7Total: formatUsd(d.last7.reduce((a, x) => a + x.cost, 0)),
      userCount,
      recent: recent?.entries,
      auditTotal: recent?.total,
      runtime: this.runtime,
    });
  }
}
