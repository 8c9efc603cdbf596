import { ExecutionContext, Injectable } from '@nestjs/common';
import { Reflector } from '@nestjs/core';
import {
  InjectThrottlerOptions,
  InjectThrottlerStorage,
  ThrottlerGuard,
  ThrottlerLimitDetail,
  type ThrottlerModuleOptions,
  type ThrottlerStorage,
} from '@nestjs/throttler';
import type { Request, Response } from 'express';
import { auditContext } from '../audit/audit-context';
import { AuditService } from '../audit/audit.service';
import { ProblemException } from '../common/problem';

/**
 * Slows password guessing: KEYWARD_SIGNIN_RATE_LIMIT attempts per minute per client address,
 * on the console form and the token endpoint alike. A refusal is audited like any sign-in.
 */
@Injectable()
export class SignInThrottlerGuard extends ThrottlerGuard {
  constructor(
    @InjectThrottlerOptions() options: ThrottlerModuleOptions,
    @InjectThrottlerStorage() storage: ThrottlerStorage,
    reflector: Reflector,
    private readonly audit: AuditService,
  ) {
    super(options, storage, reflector);
  }

  /** One bucket per client for the form and the token endpoint together, not one per route. */
  protected override generateKey(_context: ExecutionContext, suffix: string, name: string): string {
    return `signin:${name}:${suffix}`;
  }

  protected override async throwThrottlingException(
    context: ExecutionContext,
    detail: ThrottlerLimitDetail,
  ): Promise<void> {
    const req = context.switchToHttp().getRequest<Request>();
    const body = req.body as { email?: unknown } | undefined;
    const email = typeof body?.email === 'string' ? body.email.slice(0, 320).toLowerCase() : null;
    await this.audit.recordSafely(
      { ...auditContext(req), actor: { id: null, email, role: null } },
      { action: 'auth.signin', outcome: 'denied', status: 429, reason: 'rate limited' },
    );
    const retryAfter = Math.max(1, Math.ceil(detail.timeToBlockExpire || detail.timeToExpire));
    context.switchToHttp().getResponse<Response>().setHeader('Retry-After', String(retryAfter));
    throw new ProblemException(429, 'rate-limited', 'Too many sign-in attempts', `Try again in ${retryAfter} seconds.`);
  }
}
