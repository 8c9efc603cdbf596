import type { AuditEntry } from './audit-entry.entity';

export function toAuditView(entry: AuditEntry) {
  return {
    seq: entry.seq,
    at: entry.at.toISOString(),
    actor: { id: entry.actorId, email: entry.actorEmail, role: entry.actorRole },
    ip: entry.ip,
    userAgent: entry.userAgent,
    action: entry.action,
    target: { type: entry.targetType, id: entry.targetId },
    outcome: entry.outcome,
    status: entry.status,
    reason: entry.reason,
    details: entry.details,
    prevHash: entry.prevHash,
    hash: entry.hash,
  };
}
