import { Body, Controller, Get, Inject, Optional, Post, Query, Req, Res, UseGuards } from '@nestjs/common';
import type { Request, Response } from 'express';
import { auditContext } from '../audit/audit-context';
import { SkipAudit } from '../audit/audit.decorator';
import { AuditService } from '../audit/audit.service';
import { ProblemException, ValidationProblem } from '../common/problem';
import { safeLocalPath } from '../common/problem.filter';
import { validateForm } from '../common/validation';
import { render } from '../common/views';
import { AuthService } from './auth.service';
import { CheckPolicies, Public } from './decorators';
import { SessionService } from './session.service';
import { SetupService } from './setup.service';
import { SignInThrottlerGuard } from './signin-throttler.guard';
import { SetupDto } from './dto/setup.dto';
import { MfaService } from './mfa/mfa.service';
import { PendingSignIns } from './mfa/pending-sign-in';
import { UsersService } from './users/users.service';
import type { User } from './users/user.entity';
import { SecretsService } from '../crypto/secrets.service';
import type { OidcClient } from './oidc/oidc.client';
import { OIDC_CLIENT } from './oidc/oidc.strategy';
import type { KeywardConfig } from '../config/config';
import { KEYWARD_CONFIG } from '../config/config.constants';
import { SkipMfaEnrolment } from './mfa/requires-mfa.decorator';

/** The console's sign-in, sign-out and first-owner setup pages. */
@Controller()
export class AuthAdminController {
  constructor(
    private readonly auth: AuthService,
    private readonly sessions: SessionService,
    private readonly setup: SetupService,
    private readonly audit: AuditService,
    private readonly mfa: MfaService,
    @Inject(KEYWARD_CONFIG) private readonly config: KeywardConfig,
    @Optional() @Inject(OIDC_CLIENT) private readonly oidc: OidcClient | null,
    private readonly users: UsersService,
    secrets: SecretsService,
  ) {
    this.pending = new PendingSignIns(secrets.derive('mfa-pending-sign-in'), config.session.cookieSecure);
  }

  private readonly pending: PendingSignIns;

  /** Whether the sign-in page offers "Sign in with SSO". */
  private get sso(): boolean {
    return this.config.oidc !== undefined;
  }

  @Get()
  @Public()
  home(@Req() req: Request, @Res() res: Response) {
    res.redirect(303, req.authUser ? '/admin' : '/login');
  }

  @Get('login')
  @Public()
  async loginPage(@Req() req: Request, @Res() res: Response, @Query('next') next?: string) {
    if (req.authUser) return res.redirect(303, safeLocalPath(next) ?? '/admin');
    if (!(await this.setup.hasUsers())) {
      return render(req, res, 'auth/login', { title: 'Sign in', next, noUsers: true, sso: this.sso });
    }
    render(req, res, 'auth/login', { title: 'Sign in', next: safeLocalPath(next), sso: this.sso });
  }

  /**
   * Plain form post (works without JavaScript). The body is read by hand rather than through
   * the global ValidationPipe so that a bad submission re-renders the form with the message
   * instead of a problem document.
   */
  @Post('login')
  @Public()
  @SkipAudit()
  @UseGuards(SignInThrottlerGuard)
  async login(@Req() req: Request, @Res() res: Response, @Body() body: Record<string, unknown>) {
    const email = typeof body.email === 'string' ? body.email : '';
    const password = typeof body.password === 'string' ? body.password : '';
    const next = safeLocalPath(typeof body.next === 'string' ? body.next : undefined);
    if (!email || !password) {
      return render(
        req,
        res,
        'auth/login',
        { title: 'Sign in', email, next, error: 'Enter your email and password.', sso: this.sso },
        { status: 400 },
      );
    }
    try {
      const user = await this.auth.signIn(email, password, auditContext(req), 'console');
      if (await this.mfa.isEnrolled(user.id)) {
        // The second factor comes next; until then there is no session.
        this.pending.issue(res, { userId: user.id, tokenVersion: user.tokenVersion, next });
        return render(req, res, 'auth/login-mfa', { title: 'Sign in: second factor' });
      }
      await this.completeSignIn(req, res, user, next, false);
    } catch (error) {
      if (!(error instanceof ProblemException)) throw error;
      render(
        req,
        res,
        'auth/login',
        { title: 'Sign in', email, next, error: error.problem.detail, sso: this.sso },
        { status: error.getStatus() },
      );
    }
  }

  /** The second step of a sign-in for accounts with a second factor. */
  @Post('login/mfa')
  @Public()
  @SkipAudit()
  @UseGuards(SignInThrottlerGuard)
  async loginMfa(@Req() req: Request, @Res() res: Response, @Body() body: Record<string, unknown>) {
    const pending = this.pending.read(req);
    const user = pending ? await this.users.findActive(pending.userId) : null;
    if (!pending || !user || user.disabledAt || user.tokenVersion !== pending.tokenVersion) {
      this.pending.clear(res);
      return render(
        req,
        res,
        'auth/login',
        { title: 'Sign in', error: 'The sign-in expired; enter your email and password again.', sso: this.sso },
        { status: 401 },
      );
    }
    const code = typeof body.code === 'string' ? body.code.slice(0, 32) : '';
    const context = { ...auditContext(req), actor: { id: user.id, email: user.email, role: user.role } };
    if (!code || !(await this.mfa.verify(user, code, context))) {
      return render(
        req,
        res,
        'auth/login-mfa',
        { title: 'Sign in: second factor', error: 'That code is wrong or was already used.' },
        { status: 401 },
      );
    }
    this.pending.clear(res);
    await this.completeSignIn(req, res, user, pending.next, true);
  }

  private async completeSignIn(req: Request, res: Response, user: User, next: string | undefined, mfa: boolean) {
    const mustEnrol = !mfa && (await this.mfa.mustEnrol(user.id));
    await this.sessions.signIn(req, user, { via: 'password', mfaVerified: mfa, mfaEnrolmentRequired: mustEnrol });
    res.redirect(303, mustEnrol || user.mustChangePassword ? '/account' : (next ?? '/admin'));
  }

  @Post('logout')
  @SkipMfaEnrolment()
  @CheckPolicies(() => true)
  @SkipAudit()
  async logout(@Req() req: Request, @Res() res: Response) {
    const context = auditContext(req);
    const viaSso = req.session.via === 'sso';
    await this.sessions.destroy(req);
    res.clearCookie(req.app.get('session cookie name') as string);
    // Signed in through SSO: sign out at the provider too, which then sends the browser back.
    const providerSignOut = viaSso ? await this.oidc?.endSessionUrl() : undefined;
    await this.audit.record(context, {
      action: 'auth.signout',
      outcome: 'success',
      status: 303,
      details: viaSso ? { channel: 'sso', atProvider: providerSignOut !== undefined } : {},
    });
    // A page with a link rather than a redirect: the CSP's form-action keeps a form's redirect
    // from leaving Keyward's origin.
    if (providerSignOut) {
      return render(req, res, 'auth/signed-out', { title: 'Signed out', providerSignOut, sso: true });
    }
    res.redirect(303, '/login');
  }

  @Get('setup')
  @Public()
  async setupPage(@Req() req: Request, @Res() res: Response, @Query('token') token?: string) {
    if (await this.setup.hasUsers()) {
      return render(req, res, 'auth/setup', { title: 'Setup', complete: true });
    }
    if (!(await this.setup.isUsable(token))) {
      return render(req, res, 'auth/setup', { title: 'Setup', invalid: true }, { status: 403 });
    }
    render(req, res, 'auth/setup', { title: 'Create the first owner', token });
  }

  @Post('setup')
  @Public()
  @SkipAudit()
  async completeSetup(@Req() req: Request, @Res() res: Response, @Body() body: Record<string, unknown>) {
    const { dto, errors } = await validateForm(SetupDto, body);
    if (typeof dto.password === 'string' && dto.password !== dto.confirmPassword) {
      errors.push({ field: 'confirmPassword', messages: ['the passwords do not match'] });
    }
    const token = typeof body.token === 'string' ? body.token : '';
    if (errors.length > 0) {
      return render(
        req,
        res,
        'auth/setup',
        { title: 'Create the first owner', token, email: body.email, errors: ValidationProblem.byField(errors) },
        { status: 400 },
      );
    }
    try {
      const owner = await this.setup.complete(token, dto.email, dto.password, auditContext(req));
      await this.sessions.signIn(req, owner);
      res.redirect(303, '/admin');
    } catch (error) {
      if (!(error instanceof ProblemException)) throw error;
      render(
        req,
        res,
        'auth/setup',
        { title: 'Setup', invalid: true, error: error.problem.detail },
        { status: error.getStatus() },
      );
    }
  }
}
