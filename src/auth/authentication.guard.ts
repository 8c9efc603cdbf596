import { CanActivate, ExecutionContext, Injectable } from '@nestjs/common';
import { Reflector } from '@nestjs/core';
import type { Request, Response } from 'express';
import { auditContext } from '../audit/audit-context';
import { AuditService } from '../audit/audit.service';
import { isMachineRequest } from '../common/http';
import { ProblemException } from '../common/problem';
import type { AuthUser } from './auth.types';
import { IS_PUBLIC } from './decorators';
import { BearerRejected, JwtAuthGuard } from './jwt-auth.guard';
import { SessionService } from './session.service';
import { SignInRequired } from './sign-in-required';

/**
 * Who is calling. The JSON API takes bearer JWTs only; the console takes its session cookie
 * only — so a console cookie can never be replayed against the API, and CSRF protection is
 * needed on the console alone. Refusals are audited.
 */
@Injectable()
export class AuthenticationGuard implements CanActivate {
  constructor(
    private readonly reflector: Reflector,
    private readonly jwtGuard: JwtAuthGuard,
    private readonly sessions: SessionService,
    private readonly audit: AuditService,
  ) {}

  async canActivate(context: ExecutionContext): Promise<boolean> {
    if (context.getType() !== 'http') return true;
    const req = context.switchToHttp().getRequest<Request>();
    const isPublic = this.reflector.getAllAndOverride<boolean>(IS_PUBLIC, [context.getHandler(), context.getClass()]);

    if (isMachineRequest(req)) {
      if (isPublic) return true;
      try {
        await this.jwtGuard.canActivate(context);
        req.authUser = req.user as AuthUser;
        return true;
      } catch (error) {
        if (!(error instanceof BearerRejected)) throw error;
        await this.denied(req, error.reason);
        context.switchToHttp().getResponse<Response>().setHeader('WWW-Authenticate', 'Bearer realm="keyward"');
        throw new ProblemException(401, 'unauthenticated', 'Authentication required', error.detail);
      }
    }

    const state = await this.sessions.current(req);
    if (state.user) {
      req.authUser = state.user;
      return true;
    }
    if (isPublic) return true;
    await this.denied(req, state.reason ?? 'no session');
    throw new SignInRequired(req.originalUrl);
  }

  private async denied(req: Request, reason: string): Promise<void> {
    await this.audit.recordSafely(auditContext(req), {
      action: 'auth.denied',
      outcome: 'denied',
      status: 401,
      reason,
      details: { method: req.method, path: req.path },
    });
  }
}
