import { describeSchedule } from '../rotation/rotation-schedule';
import type { ApiKey } from './api-key.entity';
import { nextResetAt } from './usage-period';

export type KeyStatus = 'active' | 'revoked' | 'expired' | 'expiring' | 'over_limit';

export interface KeyViewOptions {
  now?: Date;
  expiryWarningDays: number;
  /** The provider plugin can mint keys and this key holds a management key to do it with. */
  canProvision: boolean;
}

/**
 * The limit's count now: a period that has ended counts from zero even before the reset job or
 * the next write restarts it, so the key page and the usage report name the same figure.
 */
export function currentUsage(key: ApiKey, now: Date): { current: number; resetAt: Date | null } {
  if (key.resetAt && key.resetAt.getTime() <= now.getTime() && key.usagePeriod && key.usagePeriod !== 'never') {
    return { current: 0, resetAt: nextResetAt(key.usagePeriod, now) };
  }
  return { current: key.usageCurrent, resetAt: key.resetAt };
}

export function statusOf(key: ApiKey, now: Date, expiryWarningDays: number): KeyStatus {
  if (key.revokedAt || !key.active) return 'revoked';
  if (key.expiresAt && key.expiresAt <= now) return 'expired';
  if (key.usageLimit !== null && currentUsage(key, now).current >= key.usageLimit) return 'over_limit';
  if (key.expiresAt && key.expiresAt.getTime() - now.getTime() <= expiryWarningDays * 86_400_000) return 'expiring';
  return 'active';
}

/**
 * The spec's APIKey as the API answers it. `key` is the masked hint (`sk-…abcd`); the secret
 * itself is never part of a view. Without a limit, `usage.limit` and `usage.resetAt` are null.
 */
export function toApiKeyView(key: ApiKey, options: KeyViewOptions) {
  const now = options.now ?? new Date();
  return {
    id: key.id,
    provider: key.provider,
    name: key.name,
    key: key.secretHint,
    organizationId: key.organizationId ?? undefined,
    projectId: key.projectId ?? undefined,
    externalId: key.externalId ?? undefined,
    active: key.active,
    status: statusOf(key, now, options.expiryWarningDays),
    expiresAt: key.expiresAt ?? undefined,
    createdAt: key.createdAt,
    updatedAt: key.updatedAt,
    createdBy: key.createdBy ?? undefined,
    lastUsed: key.lastUsedAt ?? undefined,
    revokedAt: key.revokedAt ?? undefined,
    revokedBy: key.revokedBy ?? undefined,
    rotationSchedule: key.rotationSchedule ?? undefined,
    rotationScheduleText: key.rotationSchedule ? describeSchedule(key.rotationSchedule) : undefined,
    nextRotationAt: key.nextRotationAt ?? undefined,
    lastRotatedAt: key.lastRotatedAt ?? undefined,
    secretVersion: key.secretVersion,
    managementKey: key.managementHint ?? undefined,
    canProvision: options.canProvision,
    priority: key.priority,
    weight: key.weight,
    usage: {
      ...currentUsage(key, now),
      limit: key.usageLimit,
      unit: key.usageUnit ?? undefined,
      period: key.usagePeriod ?? undefined,
    },
    validation: key.lastVerification ?? undefined,
    health: {
      status: key.health,
      reason: key.healthReason ?? undefined,
      changedAt: key.healthChangedAt ?? undefined,
      coolingDownUntil: key.cooldownUntil && key.cooldownUntil > now ? key.cooldownUntil : undefined,
    },
  };
}

export type ApiKeyView = ReturnType<typeof toApiKeyView>;
