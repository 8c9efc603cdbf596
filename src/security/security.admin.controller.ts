import { RequiresMfa } from '../auth/mfa/requires-mfa.decorator';
import { Controller, Get, Inject, Param, ParseUUIDPipe, Post, Req, Res, Body } from '@nestjs/common';
import type { Request, Response } from 'express';
import { AuditCheckpointService } from '../audit/audit-checkpoints';
import { Audit } from '../audit/audit.decorator';
import type { AppAbility } from '../auth/abilities';
import { CheckPolicies } from '../auth/decorators';
import { ROLES, ROLE_DESCRIPTIONS } from '../auth/roles';
import { clientIp, isHtmx, redirect } from '../common/http';
import { ProblemException, ValidationProblem } from '../common/problem';
import { validateForm } from '../common/validation';
import { flash, render } from '../common/views';
import { RUNTIME_INFO, type RuntimeInfo } from '../runtime';
import { CreateIpRuleDto } from './dto/create-ip-rule.dto';
import { SecurityService } from './security.service';

const uuid = new ParseUUIDPipe({ version: '4' });

/**
 * The console's Security page, as the spec's component hierarchy has it: AccessControl (roles
 * and IP rules), RateLimits (sign-in limits and lockouts) and AuditLogs (the log and its
 * checkpoints). Every form posts without JavaScript; htmx swaps the one section it changed.
 */
@Controller('admin/security')
export class SecurityAdminController {
  constructor(
    private readonly security: SecurityService,
    private readonly checkpoints: AuditCheckpointService,
    @Inject(RUNTIME_INFO) private readonly runtime: RuntimeInfo,
  ) {}

  @Get()
  @CheckPolicies((ability) => ability.can('read', 'Dashboard'))
  async index(@Req() req: Request, @Res() res: Response) {
    render(req, res, 'console/security', { title: 'Security', nav: 'security', ...(await this.context(req)) });
  }

  @RequiresMfa()
  @Post('ip-rules')
  @Audit('ip_rule.create', 'IpRule')
  @CheckPolicies((ability) => ability.can('update', 'User'))
  async addRule(@Req() req: Request, @Res() res: Response, @Body() body: Record<string, unknown>) {
    const form = {
      scope: body.scope === 'user' ? 'user' : 'role',
      role: typeof body.role === 'string' ? body.role : '',
      email: typeof body.email === 'string' ? body.email : '',
      cidr: typeof body.cidr === 'string' ? body.cidr : '',
      note: typeof body.note === 'string' ? body.note : '',
    };
    try {
      const fields: Record<string, unknown> = { cidr: form.cidr, ...(form.note ? { note: form.note } : {}) };
      if (form.scope === 'user') {
        const user = form.email ? await this.security.findUserByEmail(form.email) : null;
        if (!user) throw new ValidationProblem([{ field: 'email', messages: ['no user with this email'] }]);
        fields.userId = user.id;
      } else {
        fields.role = form.role;
      }
      const { dto, errors: invalid } = await validateForm(CreateIpRuleDto, fields);
      if (invalid.length > 0) throw new ValidationProblem(invalid);
      const rule = await this.security.createRule(
        dto,
        { ...req.authUser!, ip: clientIp(req) },
        req.ability as AppAbility,
      );
      res.locals.auditTargetId = rule.id;
      return this.done(req, res, `Added ${rule.cidr} for ${rule.role ?? rule.userEmail}.`);
    } catch (error) {
      if (!(error instanceof ProblemException)) throw error;
      res.locals.auditFailed = true;
      res.locals.auditReason = error.problem.detail ?? error.problem.title;
      const errors =
        error instanceof ValidationProblem
          ? ValidationProblem.byField(error.errors)
          : { cidr: error.problem.detail ?? error.problem.title };
      const status = error.getStatus();
      if (isHtmx(req)) {
        return render(
          req,
          res,
          'console/security',
          { ...(await this.context(req)), form, errors },
          {
            partial: 'security/access',
            status,
          },
        );
      }
      render(
        req,
        res,
        'console/security',
        { title: 'Security', nav: 'security', ...(await this.context(req)), form, errors },
        { status },
      );
    }
  }

  @RequiresMfa()
  @Post('ip-rules/:id/delete')
  @Audit('ip_rule.delete', 'IpRule')
  @CheckPolicies((ability) => ability.can('update', 'User'))
  async deleteRule(@Req() req: Request, @Res() res: Response, @Param('id', uuid) id: string) {
    try {
      const rule = await this.security.removeRule(
        id,
        { ...req.authUser!, ip: clientIp(req) },
        req.ability as AppAbility,
      );
      return this.done(req, res, `Removed ${rule.cidr} for ${rule.role ?? rule.userEmail}.`);
    } catch (error) {
      return this.failed(req, res, error);
    }
  }

  @Post('lockouts/:userId/unlock')
  @Audit('auth.unlock', 'User', 'userId')
  @CheckPolicies((ability) => ability.can('update', 'User'))
  async unlock(@Req() req: Request, @Res() res: Response, @Param('userId', uuid) userId: string) {
    try {
      await this.security.unlock(userId, req.ability as AppAbility);
      return this.done(req, res, 'Account unlocked.');
    } catch (error) {
      return this.failed(req, res, error);
    }
  }

  @Post('checkpoints')
  @Audit('audit.checkpoint', 'AuditLog')
  @CheckPolicies((ability) => ability.can('create', 'AuditLog'))
  async checkpoint(@Req() req: Request, @Res() res: Response) {
    const checkpoint = await this.checkpoints.take('manual');
    return this.done(
      req,
      res,
      checkpoint ? `Signed a checkpoint at entry ${checkpoint.seq}.` : 'The audit log is empty.',
    );
  }

  /** Without JavaScript: back to the page with a message. With htmx: the page reloads in place. */
  private done(req: Request, res: Response, message: string) {
    flash(req, 'success', message);
    redirect(req, res, '/admin/security');
  }

  private failed(req: Request, res: Response, error: unknown) {
    if (!(error instanceof ProblemException)) throw error;
    res.locals.auditFailed = true;
    res.locals.auditReason = error.problem.detail ?? error.problem.title;
    if (isHtmx(req)) throw error;
    flash(req, 'error', error.problem.detail ?? error.problem.title);
    res.redirect(303, '/admin/security');
  }

  private async context(req: Request) {
    const ability = req.ability as AppAbility;
    const mayReadUsers = ability.can('read', 'User');
    // One after the other: after a change this runs inside the request's transaction, on one connection.
    const rules = mayReadUsers ? await this.security.rules() : [];
    const lockouts = mayReadUsers ? await this.security.lockouts() : [];
    const latest = ability.can('read', 'AuditLog') ? await this.checkpoints.latest() : null;
    return {
      runtime: this.runtime,
      roles: ROLES.map((name) => ({ name, description: ROLE_DESCRIPTIONS[name] })),
      roleNames: ROLES,
      rules,
      lockouts,
      limits: this.security.limits(),
      checkpoint: latest ? { ...latest.checkpoint, source: latest.source, genuine: latest.genuine } : null,
      yourAddress: clientIp(req),
      mayManageRules: ability.can('update', 'User'),
      mayCheckpoint: ability.can('create', 'AuditLog'),
      form: { scope: 'role', role: 'admin' },
      errors: {},
    };
  }
}
