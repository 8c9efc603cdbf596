import type { Request } from 'express';
import { clientIp, userAgent } from '../common/http';
import type { AuditContext } from './audit.types';

export function auditContext(req: Request): AuditContext {
  const user = req.authUser;
  return {
    actor: user ? { id: user.id, email: user.email, role: user.role } : null,
    ip: clientIp(req),
    userAgent: userAgent(req),
  };
}
