import { Body, Controller, Get, Param, Post, Query, Req, Res } from '@nestjs/common';
import type { Request, Response } from 'express';
import type { AppAbility } from '../abilities';
import { asSubject } from '../abilities';
import { CheckPolicies } from '../decorators';
import { ROLES, ROLE_DESCRIPTIONS } from '../roles';

/** The role the new-user form starts on: read-only. */
export const NEW_USER_ROLE = 'auditor';
import { Audit } from '../../audit/audit.decorator';
import { isHtmx } from '../../common/http';
import { pager } from '../../common/pagination';
import { ProblemException, ValidationProblem } from '../../common/problem';
import { validateForm } from '../../common/validation';
import { flash, render } from '../../common/views';
import { CreateUserDto } from './dto/create-user.dto';
import { ListUsersQuery } from './dto/list-users.query';
import { UpdateUserDto } from './dto/update-user.dto';
import type { User } from './user.entity';
import { uuid } from './users.controller';
import { UsersService } from './users.service';
import { ResetPasswordDto } from '../account/dto/change-password.dto';
import { RequiresMfa } from '../mfa/requires-mfa.decorator';

/** A user as a table row shows it, with what the viewer may do to it. */
function rowOf(user: User, req: Request) {
  const ability = req.ability as AppAbility;
  const self = user.id === req.authUser?.id;
  return {
    id: user.id,
    email: user.email,
    role: user.role,
    active: user.disabledAt === null,
    lastSignInAt: user.lastSignInAt,
    createdAt: user.createdAt,
    self,
    canEdit: ability.can('update', asSubject('User', { role: user.role })),
    canDisable: !self && ability.can('disable', asSubject('User', { role: user.role })),
    // SSO-only accounts have no password to reset; one's own is changed on the Account page.
    canReset: !self && user.ssoSubject === null && ability.can('update', asSubject('User', { role: user.role })),
    roles: ROLES.filter((r) => ability.can('update', asSubject('User', { role: r }))).map((r) => ({
      name: r,
      selected: r === user.role,
    })),
  };
}

/** The console's Security → Users page. Same service as the JSON API. */
@Controller('admin/users')
export class UsersAdminController {
  constructor(private readonly users: UsersService) {}

  @Get()
  @CheckPolicies((ability) => ability.can('read', 'User'))
  async index(@Req() req: Request, @Res() res: Response, @Query() query: ListUsersQuery) {
    await this.renderIndex(req, res, query, {}, 200);
  }

  private async renderIndex(
    req: Request,
    res: Response,
    query: ListUsersQuery,
    extra: Record<string, unknown>,
    status: number,
  ) {
    const { users, total } = await this.users.list(query);
    render(
      req,
      res,
      'users/index',
      {
        title: 'Users',
        nav: 'users',
        rows: users.map((u) => rowOf(u, req)),
        pager: pager(query.page, query.pageSize, total),
        filters: query,
        roleOptions: this.creatableRoles(req),
        roleDescriptions: ROLES.map((r) => ({ name: r, description: ROLE_DESCRIPTIONS[r] })),
        // A new user starts with the least privilege; more is a deliberate choice.
        form: { role: NEW_USER_ROLE },
        ...extra,
      },
      { partial: 'users/table', status },
    );
  }

  @Post()
  @Audit('user.create', 'User')
  @CheckPolicies((ability) => ability.can('create', 'User'))
  async create(@Req() req: Request, @Res() res: Response, @Body() body: Record<string, unknown>) {
    const { dto, errors } = await validateForm(CreateUserDto, body);
    const form = { email: body.email, role: body.role };
    if (errors.length > 0) {
      res.locals.auditReason = 'invalid form';
      return this.renderForm(req, res, { form, errors: ValidationProblem.byField(errors) }, 400);
    }
    try {
      const user = await this.users.create(dto, req.ability as AppAbility);
      res.locals.auditTargetId = user.id;
      if (!isHtmx(req)) {
        flash(req, 'success', `Created ${user.email} (${user.role}).`);
        return res.redirect(303, '/admin/users');
      }
      // The form resets; the table reloads itself on this event.
      res.setHeader('HX-Trigger', 'users-changed');
      return this.renderForm(req, res, { created: user.email }, 201);
    } catch (error) {
      if (error instanceof ValidationProblem) {
        res.locals.auditReason = error.problem.detail;
        return this.renderForm(req, res, { form, errors: ValidationProblem.byField(error.errors) }, 400);
      }
      throw error;
    }
  }

  @Post(':id/role')
  @Audit('user.update', 'User')
  @RequiresMfa()
  @CheckPolicies((ability) => ability.can('update', 'User'))
  async changeRole(
    @Req() req: Request,
    @Res() res: Response,
    @Param('id', uuid) id: string,
    @Body() body: Record<string, unknown>,
  ) {
    const { dto, errors } = await validateForm(UpdateUserDto, { role: body.role });
    if (errors.length > 0 || !dto.role) {
      throw new ValidationProblem(errors.length ? errors : [{ field: 'role', messages: ['choose a role'] }]);
    }
    await this.applyAndShowRow(req, res, id, { role: dto.role }, `Role changed to ${dto.role}.`);
  }

  @Post(':id/disable')
  @Audit('user.disable', 'User')
  @RequiresMfa()
  @CheckPolicies((ability) => ability.can('disable', 'User'))
  async disable(@Req() req: Request, @Res() res: Response, @Param('id', uuid) id: string) {
    await this.applyAndShowRow(req, res, id, { disabled: true }, 'User disabled and signed out.');
  }

  @Post(':id/enable')
  @Audit('user.enable', 'User')
  @CheckPolicies((ability) => ability.can('update', 'User'))
  async enable(@Req() req: Request, @Res() res: Response, @Param('id', uuid) id: string) {
    await this.applyAndShowRow(req, res, id, { disabled: false }, 'User enabled.');
  }

  /** An owner's (or admin's, for non-owners) reset: a temporary password, changed at next sign-in. */
  @Post(':id/password')
  @Audit('user.password-reset', 'User')
  @RequiresMfa()
  @CheckPolicies((ability) => ability.can('update', 'User'))
  async resetPassword(
    @Req() req: Request,
    @Res() res: Response,
    @Param('id', uuid) id: string,
    @Body() body: Record<string, unknown>,
  ) {
    const { dto, errors } = await validateForm(ResetPasswordDto, { password: body.password });
    if (errors.length > 0) throw new ValidationProblem(errors);
    try {
      const user = await this.users.resetPassword(id, dto.password, req.ability as AppAbility, req.authUser!.id);
      if (isHtmx(req)) {
        return render(
          req,
          res,
          'users/index',
          { row: { ...rowOf(user, req), resetDone: true } },
          { partial: 'users/row' },
        );
      }
      flash(req, 'success', `${user.email}: password reset; they choose a new one at their next sign-in.`);
      res.redirect(303, '/admin/users');
    } catch (error) {
      if (isHtmx(req) || !(error instanceof ProblemException)) throw error;
      res.locals.auditFailed = true;
      res.locals.auditReason = error.problem.detail ?? error.problem.title;
      flash(req, 'error', error.problem.detail ?? error.problem.title);
      res.redirect(303, '/admin/users');
    }
  }

  /** htmx swaps the one row; without JavaScript the page reloads with a message. */
  private async applyAndShowRow(req: Request, res: Response, id: string, change: UpdateUserDto, done: string) {
    try {
      const user = await this.users.update(id, change, req.ability as AppAbility, req.authUser!.id);
      if (isHtmx(req)) {
        return render(req, res, 'users/index', { row: rowOf(user, req) }, { partial: 'users/row' });
      }
      flash(req, 'success', `${user.email}: ${done}`);
      res.redirect(303, '/admin/users');
    } catch (error) {
      if (isHtmx(req) || !(error instanceof ProblemException)) throw error;
      res.locals.auditFailed = true;
      res.locals.auditReason = error.problem.detail ?? error.problem.title;
      flash(req, 'error', error.problem.detail ?? error.problem.title);
      res.redirect(303, '/admin/users');
    }
  }

  /** htmx gets the form alone; without JavaScript the whole page, errors beside the fields. */
  private async renderForm(req: Request, res: Response, data: Record<string, unknown>, status: number) {
    const context = { roleOptions: this.creatableRoles(req), form: { role: NEW_USER_ROLE }, ...data };
    if (isHtmx(req)) return render(req, res, 'users/index', context, { partial: 'users/form', status });
    await this.renderIndex(req, res, Object.assign(new ListUsersQuery(), { page: 1, pageSize: 50 }), context, status);
  }

  private creatableRoles(req: Request) {
    const ability = req.ability as AppAbility;
    return ROLES.filter((r) => ability.can('create', asSubject('User', { role: r })));
  }
}
