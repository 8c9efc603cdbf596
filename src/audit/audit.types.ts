import type { AuditOutcome } from './audit-entry.entity';

export interface AuditActor {
  id: string | null;
  email: string | null;
  role: string | null;
}

/** Who did it and from where; built from the request by `auditContext()`. */
export interface AuditContext {
  actor: AuditActor | null;
  ip: string | null;
  userAgent: string | null;
}

export interface AuditRecord {
  action: string;
  outcome: AuditOutcome;
  target?: { type: string; id?: string | null };
  status?: number;
  reason?: string;
  /** Extra facts; fields named like secrets are dropped before storing. */
  details?: Record<string, unknown>;
}

export const SYSTEM_ACTOR: AuditActor = { id: null, email: 'system', role: null };
