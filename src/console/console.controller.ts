import { Controller, Get, Inject, Req, Res } from '@nestjs/common';
import type { Request, Response } from 'express';
import { AuditService } from '../audit/audit.service';
import { CheckPolicies } from '../auth/decorators';
import { render } from '../common/views';
import { RUNTIME_INFO, type RuntimeInfo } from '../runtime';
import { UsersService } from '../auth/users/users.service';

/** Console pages that belong to no single feature: the dashboard and section landings. */
@Controller('admin')
export class ConsoleController {
  constructor(
    private readonly users: UsersService,
    private readonly audit: AuditService,
    @Inject(RUNTIME_INFO) private readonly runtime: RuntimeInfo,
  ) {}

  @Get()
  @CheckPolicies((ability) => ability.can('read', 'Dashboard'))
  async dashboard(@Req() req: Request, @Res() res: Response) {
    const canReadAudit = req.ability?.can('read', 'AuditLog') ?? false;
    const [userCount, recent] = await Promise.all([
      this.users.count(),
      canReadAudit ? this.audit.list({ page: 1, pageSize: 8 }) : Promise.resolve(null),
    ]);
    render(req, res, 'console/dashboard', {
      title: 'Dashboard',
      nav: 'dashboard',
      userCount,
      recent: recent?.entries,
      auditTotal: recent?.total,
      runtime: this.runtime,
    });
  }

  @Get('alerts')
  @CheckPolicies((ability) => ability.can('read', 'Alert'))
  alerts(@Req() req: Request, @Res() res: Response) {
    render(req, res, 'console/section', {
      title: 'Alerts',
      nav: 'alerts',
      intro: 'Alerts on high usage, cost limits, error spikes and expiring keys.',
      pending: 'Alert rules and their history arrive with usage monitoring.',
    });
  }
}
