import { CanActivate, ExecutionContext, Injectable, Logger } from '@nestjs/common';
import { Reflector } from '@nestjs/core';
import type { Request } from 'express';
import { AUDIT_META, type AuditMeta } from '../audit/audit.decorator';
import { auditContext } from '../audit/audit-context';
import { AuditService } from '../audit/audit.service';
import { ProblemException } from '../common/problem';
import { defineAbilityFor } from './abilities';
import { CHECK_POLICIES, IS_PUBLIC, PolicyHandler } from './decorators';

/**
 * Whether the caller may. Builds the CASL ability from the user's current role and runs the
 * route's @CheckPolicies handlers; a route without any is refused (fail closed). Refusals are
 * audited with the route and the caller's role.
 */
@Injectable()
export class PoliciesGuard implements CanActivate {
  private readonly logger = new Logger(PoliciesGuard.name);

  constructor(
    private readonly reflector: Reflector,
    private readonly audit: AuditService,
  ) {}

  async canActivate(context: ExecutionContext): Promise<boolean> {
    if (context.getType() !== 'http') return true;
    const targets = [context.getHandler(), context.getClass()];
    if (this.reflector.getAllAndOverride<boolean>(IS_PUBLIC, targets)) return true;

    const req = context.switchToHttp().getRequest<Request>();
    const user = req.authUser;
    if (!user) throw new ProblemException(401, 'unauthenticated', 'Authentication required');
    const ability = defineAbilityFor(user.role);
    req.ability = ability;

    const handlers = this.reflector.getAllAndOverride<PolicyHandler[] | undefined>(CHECK_POLICIES, targets);
    if (!handlers || handlers.length === 0) {
      this.logger.error(`${req.method} ${req.path} has no @CheckPolicies; refusing it`);
    } else if (handlers.every((handler) => handler(ability))) {
      return true;
    }

    // The refused action and its target go along, so the log answers "who tried to revoke key X".
    const meta = this.reflector.get<AuditMeta | false | undefined>(AUDIT_META, context.getHandler());
    const targetId = meta ? (req.params?.[meta.idParam ?? 'id'] as string | undefined) : undefined;
    await this.audit.recordSafely(auditContext(req), {
      action: 'access.denied',
      outcome: 'denied',
      target: meta && meta.targetType ? { type: meta.targetType, id: targetId ?? null } : undefined,
      status: 403,
      reason: `role ${user.role} may not ${req.method} ${req.path}`,
      details: { method: req.method, path: req.path, ...(meta ? { attempted: meta.action } : {}) },
    });
    throw new ProblemException(403, 'forbidden', 'Not allowed', `Your role (${user.role}) does not allow this action.`);
  }
}
