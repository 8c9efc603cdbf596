import type { KeyRotation } from './key-rotation.entity';

export function toRotationView(r: KeyRotation) {
  return {
    id: r.id,
    keyId: r.keyId,
    trigger: r.trigger,
    source: r.source,
    status: r.status,
    fromVersion: r.fromVersion,
    toVersion: r.toVersion ?? undefined,
    oldKey: r.oldHint,
    newKey: r.newHint ?? undefined,
    graceUntil: r.graceUntil ?? undefined,
    retiredAt: r.retiredAt ?? undefined,
    retireAttempts: r.retireAttempts,
    error: r.error ?? undefined,
    actor: r.actor ?? undefined,
    createdAt: r.createdAt,
  };
}
