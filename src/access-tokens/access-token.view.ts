import type { AccessToken } from './access-token.entity';
import type { BudgetView } from './token-budgets';

export type AccessTokenStatus = 'active' | 'revoked' | 'expired';

export function statusOf(
  token: Pick<AccessToken, 'revokedAt' | 'expiresAt'>,
  now: Date = new Date(),
): AccessTokenStatus {
  if (token.revokedAt) return 'revoked';
  if (token.expiresAt && token.expiresAt <= now) return 'expired';
  return 'active';
}

/**
 * An access token as the API answers it. `hint` is the masked token (`kw_…wxyz`); the token
 * itself is shown once, by the create call, and is part of no view. A null list means "all".
 */
export function toAccessTokenView(token: AccessToken, budgets: BudgetView[] = [], now: Date = new Date()) {
  const status = statusOf(token, now);
  return {
    id: token.id,
    name: token.name,
    hint: token.tokenHint,
    status,
    active: status === 'active',
    providers: token.providers,
    models: token.models,
    rateLimitPerMinute: token.rateLimitPerMinute,
    allowedIps: token.allowedIps,
    /** Grants beyond the inference endpoints; empty: inference only. */
    scopes: token.scopes ?? [],
    /** Each budget with `used`, `reserved`, `remaining`, `percent` and `resetAt`. */
    budgets,
    expiresAt: token.expiresAt?.toISOString() ?? null,
    lastUsedAt: token.lastUsedAt?.toISOString() ?? null,
    createdAt: token.createdAt.toISOString(),
    createdBy: token.createdBy,
    revokedAt: token.revokedAt?.toISOString() ?? null,
    revokedBy: token.revokedBy,
  };
}

export type AccessTokenView = ReturnType<typeof toAccessTokenView>;
