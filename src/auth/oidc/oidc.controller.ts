import { Controller, Get, Inject, Optional, Req, Res, UseGuards } from '@nestjs/common';
import type { Request, Response } from 'express';
import { auditContext } from '../../audit/audit-context';
import { SkipAudit } from '../../audit/audit.decorator';
import { render } from '../../common/views';
import { AuthService } from '../auth.service';
import { Public } from '../decorators';
import { MfaService } from '../mfa/mfa.service';
import { SessionService } from '../session.service';
import { OidcClient } from './oidc.client';
import { OIDC_CLIENT, OidcGuard, type OidcResult } from './oidc.strategy';

/** "Sign in with SSO": off to the provider, and back. */
@Controller('auth/oidc')
export class OidcController {
  constructor(
    private readonly auth: AuthService,
    private readonly sessions: SessionService,
    private readonly mfa: MfaService,
    @Optional() @Inject(OIDC_CLIENT) private readonly client: OidcClient | null,
  ) {}

  /** The strategy redirects to the provider; this handler runs only if it could not. */
  @Get()
  @Public()
  @UseGuards(OidcGuard)
  start(@Req() req: Request, @Res() res: Response) {
    return this.done(req, res);
  }

  @Get('callback')
  @Public()
  @SkipAudit()
  @UseGuards(OidcGuard)
  callback(@Req() req: Request, @Res() res: Response) {
    return this.done(req, res);
  }

  private async done(req: Request, res: Response) {
    const result = req.user as OidcResult;
    if ('refusal' in result) {
      await this.auth.recordSsoRefusal(result.refusal, auditContext(req));
      return render(
        req,
        res,
        'auth/login',
        { title: 'Sign in', error: result.refusal.detail, sso: this.client !== null },
        { status: 403 },
      );
    }
    const mustEnrol = await this.mfa.mustEnrol(result.user.id);
    await this.sessions.signIn(req, result.user, { via: 'sso', mfaEnrolmentRequired: mustEnrol });
    res.redirect(303, mustEnrol ? '/account' : (result.next ?? '/admin'));
  }
}
