import { Body, Controller, Get, Param, Post, Req, Res } from '@nestjs/common';
import type { Request, Response } from 'express';
import { auditContext } from '../../audit/audit-context';
import { Audit, SkipAudit } from '../../audit/audit.decorator';
import { isHtmx } from '../../common/http';
import { ProblemException, ValidationProblem } from '../../common/problem';
import { validateForm } from '../../common/validation';
import { flash, render } from '../../common/views';
import type { AuthUser } from '../auth.types';
import { CheckPolicies } from '../decorators';
import { MfaService, RECOVERY_CODE_COUNT } from '../mfa/mfa.service';
import { RequiresMfa, SkipMfaEnrolment } from '../mfa/requires-mfa.decorator';
import { SessionService } from '../session.service';
import { UsersService } from '../users/users.service';
import { ChangePasswordDto } from './dto/change-password.dto';
import { MfaCodeDto } from './dto/mfa.dto';

const anyone = () => true;

/**
 * The console's Account page: one's password, second factor and sessions. Reachable while an
 * owner's MFA mandate or password reset is pending (that is where those send people).
 */
@Controller('account')
@SkipMfaEnrolment()
export class AccountAdminController {
  constructor(
    private readonly mfa: MfaService,
    private readonly users: UsersService,
    private readonly sessions: SessionService,
  ) {}

  @Get()
  @CheckPolicies(anyone)
  async index(@Req() req: Request, @Res() res: Response) {
    await this.renderPage(req, res, {}, 200);
  }

  @Get('mfa')
  @CheckPolicies(anyone)
  async mfaPage(@Req() req: Request, @Res() res: Response) {
    await this.renderPage(req, res, {}, 200);
  }

  @Post('password')
  @Audit('user.password-change', 'User')
  @CheckPolicies(anyone)
  async changePassword(@Req() req: Request, @Res() res: Response, @Body() body: Record<string, unknown>) {
    const user = req.authUser as AuthUser;
    res.locals.auditTargetId = user.id;
    const { dto, errors } = await validateForm(ChangePasswordDto, {
      currentPassword: body.currentPassword,
      newPassword: body.newPassword,
    });
    if (errors.length === 0 && body.newPassword !== body.confirmPassword) {
      errors.push({ field: 'confirmPassword', messages: ['the new passwords do not match'] });
    }
    if (errors.length > 0) {
      res.locals.auditReason = 'invalid form';
      return this.renderSection(req, res, 'password', { passwordErrors: ValidationProblem.byField(errors) }, 400);
    }
    try {
      await this.users.changePassword(user.id, dto.currentPassword, dto.newPassword);
      // Every other session has just ended; this one carries on, under a new id and version.
      await this.sessions.signIn(req, await this.users.get(user.id), { via: 'password' });
      flash(req, 'success', 'Password changed. Your other sessions and access tokens have ended.');
      return this.redirectHome(req, res);
    } catch (error) {
      if (!(error instanceof ProblemException)) throw error;
      res.locals.auditReason = error.problem.detail;
      const passwordErrors =
        error instanceof ValidationProblem ? ValidationProblem.byField(error.errors) : { form: error.problem.detail };
      return this.renderSection(req, res, 'password', { passwordErrors }, error.getStatus());
    }
  }

  @Post('mfa/enrol')
  @SkipAudit()
  @CheckPolicies(anyone)
  async enrol(@Req() req: Request, @Res() res: Response) {
    try {
      const enrolment = await this.mfa.beginEnrolment(req.authUser as AuthUser, auditContext(req));
      return this.renderSection(req, res, 'mfa', { enrolment }, 200);
    } catch (error) {
      return this.mfaFailed(req, res, error);
    }
  }

  @Post('mfa/confirm')
  @SkipAudit()
  @CheckPolicies(anyone)
  async confirm(@Req() req: Request, @Res() res: Response, @Body() body: Record<string, unknown>) {
    const { dto, errors } = await validateForm(MfaCodeDto, { code: body.code });
    if (errors.length > 0) return this.renderSection(req, res, 'mfa', { mfaError: errors[0].messages[0] }, 400);
    try {
      const recoveryCodes = await this.mfa.confirm(req.authUser as AuthUser, dto.code, auditContext(req));
      req.session.mfaVerifiedAt = Date.now();
      delete req.session.mfaEnrolmentRequired;
      return this.renderSection(req, res, 'mfa', { recoveryCodes, count: RECOVERY_CODE_COUNT }, 200);
    } catch (error) {
      return this.mfaFailed(req, res, error);
    }
  }

  @Post('mfa/disable')
  @SkipAudit()
  @CheckPolicies(anyone)
  async disable(@Req() req: Request, @Res() res: Response, @Body() body: Record<string, unknown>) {
    const { dto, errors } = await validateForm(MfaCodeDto, { code: body.code });
    if (errors.length > 0) return this.renderSection(req, res, 'mfa', { mfaError: errors[0].messages[0] }, 400);
    try {
      await this.mfa.disable(req.authUser as AuthUser, dto.code, auditContext(req));
      delete req.session.mfaVerifiedAt;
      return this.renderSection(req, res, 'mfa', { disabled: true }, 200);
    } catch (error) {
      return this.mfaFailed(req, res, error);
    }
  }

  @Post('mfa/recovery-codes')
  @SkipAudit()
  @CheckPolicies(anyone)
  async regenerate(@Req() req: Request, @Res() res: Response, @Body() body: Record<string, unknown>) {
    const { dto, errors } = await validateForm(MfaCodeDto, { code: body.code });
    if (errors.length > 0) return this.renderSection(req, res, 'mfa', { mfaError: errors[0].messages[0] }, 400);
    try {
      const recoveryCodes = await this.mfa.regenerateRecoveryCodes(
        req.authUser as AuthUser,
        dto.code,
        auditContext(req),
      );
      return this.renderSection(req, res, 'mfa', { recoveryCodes, count: RECOVERY_CODE_COUNT }, 200);
    } catch (error) {
      return this.mfaFailed(req, res, error);
    }
  }

  /** Owners: require a second factor of everyone. */
  @Post('mfa/policy')
  @SkipAudit()
  @RequiresMfa()
  @CheckPolicies((ability) => ability.can('manage', 'all'))
  async policy(@Req() req: Request, @Res() res: Response, @Body() body: Record<string, unknown>) {
    try {
      await this.mfa.setRequiredForAll(body.requiredForAll === 'true', req.authUser as AuthUser, auditContext(req));
      return this.renderSection(req, res, 'mfa', {}, 200);
    } catch (error) {
      return this.mfaFailed(req, res, error);
    }
  }

  @Post('sessions/:handle/end')
  @Audit('auth.session-end')
  @CheckPolicies(anyone)
  async endSession(@Req() req: Request, @Res() res: Response, @Param('handle') handle: string) {
    const user = req.authUser as AuthUser;
    if (!/^[0-9a-f]{32}$/.test(handle) || !(await this.sessions.endOne(user.id, handle))) {
      res.locals.auditFailed = true;
      res.locals.auditReason = 'no such session';
      return this.renderSection(req, res, 'sessions', { sessionsError: 'That session has already ended.' }, 404);
    }
    return this.renderSection(req, res, 'sessions', { sessionsDone: 'Session signed out.' }, 200);
  }

  /** Every session (this one included) and every JWT of the user end. */
  @Post('sessions/end-all')
  @Audit('auth.signout-everywhere', 'User')
  @CheckPolicies(anyone)
  async endAll(@Req() req: Request, @Res() res: Response) {
    const user = req.authUser as AuthUser;
    res.locals.auditTargetId = user.id;
    await this.users.signOutEverywhere(user.id);
    await this.sessions.destroy(req);
    res.clearCookie(req.app.get('session cookie name') as string);
    if (isHtmx(req)) {
      res.setHeader('HX-Redirect', '/login');
      return res.status(204).end();
    }
    res.redirect(303, '/login');
  }

  private mfaFailed(req: Request, res: Response, error: unknown) {
    if (!(error instanceof ProblemException)) throw error;
    return this.renderSection(req, res, 'mfa', { mfaError: error.problem.detail ?? error.problem.title }, 400);
  }

  private redirectHome(req: Request, res: Response) {
    if (isHtmx(req)) {
      res.setHeader('HX-Redirect', '/account');
      return res.status(204).end();
    }
    res.redirect(303, '/account');
  }

  /** htmx swaps the one section; without JavaScript the whole page. */
  private async renderSection(
    req: Request,
    res: Response,
    section: 'mfa' | 'password' | 'sessions',
    extra: Record<string, unknown>,
    status: number,
  ) {
    if (isHtmx(req)) {
      const context = await this.context(req, extra);
      return render(req, res, 'account/index', context, { partial: `account/${section}`, status });
    }
    await this.renderPage(req, res, extra, status);
  }

  private async renderPage(req: Request, res: Response, extra: Record<string, unknown>, status: number) {
    render(req, res, 'account/index', await this.context(req, extra), { status });
  }

  private async context(req: Request, extra: Record<string, unknown>) {
    const user = req.authUser as AuthUser;
    const [mfa, sessions] = await Promise.all([
      this.mfa.status(user.id),
      this.sessions.listFor(user.id, req.sessionID),
    ]);
    return {
      title: 'Account',
      nav: 'account',
      mfa,
      sessions,
      isOwner: user.role === 'owner',
      hasPassword: await this.users.hasPassword(user.id),
      mustChangePassword: user.mustChangePassword,
      enrolmentRequired: req.session.mfaEnrolmentRequired === true,
      ...extra,
    };
  }
}
