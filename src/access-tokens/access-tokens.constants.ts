/** Injection token for the gateway's `RateLimiter` (in memory, or Redis when REDIS_URL is set). */
export const RATE_LIMITER = Symbol('RATE_LIMITER');

/** PostgreSQL NOTIFY channel on which a revoke tells every instance to forget the token. */
export const TOKENS_CHANNEL = 'keyward_tokens';

/** `kw_` and 43 base64url characters: 32 random bytes. */
export const ACCESS_TOKEN_PATTERN = /^kw_[A-Za-z0-9_-]{43}$/;

/**
 * What a token may be granted beyond the default (the inference endpoint groups): the data
 * endpoint groups of the providers, and `usage:report` (may POST /api/usage).
 */
export const TOKEN_SCOPES = ['files', 'uploads', 'batches', 'vector_stores', 'fine_tuning', 'usage:report'] as const;
export type TokenScope = (typeof TOKEN_SCOPES)[number];
