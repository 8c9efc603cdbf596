import { CanActivate, ExecutionContext, Injectable } from '@nestjs/common';
import type { Request } from 'express';
import { auditContext } from '../audit/audit-context';
import { IpAllowlistService } from './ip-allowlist.service';

/**
 * Runs after AuthenticationGuard on every route: a signed-in person (console session or bearer
 * JWT) outside the IP allowlist of their role or account is refused with 403, audited. Public
 * routes with nobody signed in pass; sign-in itself is checked by AuthService.
 */
@Injectable()
export class IpAllowlistGuard implements CanActivate {
  constructor(private readonly allowlist: IpAllowlistService) {}

  async canActivate(context: ExecutionContext): Promise<boolean> {
    if (context.getType() !== 'http') return true;
    const req = context.switchToHttp().getRequest<Request>();
    const user = req.authUser;
    if (!user) return true;
    await this.allowlist.refuseIfOutside(user, auditContext(req), `${req.method} ${req.path}`);
    return true;
  }
}
