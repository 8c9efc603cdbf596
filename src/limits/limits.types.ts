/** Amounts a limit or budget counts, one per unit it can be set in. */
export interface UsageAmount {
  tokens: number;
  usd: number;
  requests: number;
}

/** A request's worst case; `unpriced` when the model has no price (its `usd` is then a fallback or 0). */
export interface WorstCase extends UsageAmount {
  unpriced: boolean;
}

export type LimitUnit = 'tokens' | 'requests' | 'usd';
/** Key limits use `never` for a lifetime limit, token budgets `total`; both never reset. */
export type LimitPeriod = 'daily' | 'weekly' | 'monthly' | 'total' | 'never';
export type BudgetPeriod = 'daily' | 'weekly' | 'monthly' | 'total';

export const LIMIT_UNITS: readonly LimitUnit[] = ['tokens', 'requests', 'usd'];
export const BUDGET_PERIODS: readonly BudgetPeriod[] = ['daily', 'weekly', 'monthly', 'total'];

export interface LimitRefusal {
  ok: false;
  /** Whose counter refused: the provider key's limit (try another key) or the token's budget. */
  scope: 'key' | 'token';
  unit: LimitUnit;
  period: LimitPeriod;
  limit: number;
  /** Used plus reserved when the request was refused. */
  used: number;
  /** When the counter starts over; null for lifetime limits. */
  resetAt: Date | null;
  detail: string;
}

/** Where a reservation is held: nowhere (nothing limited), PostgreSQL, Redis, or this instance's memory. */
export type ReservationStore = 'none' | 'postgres' | 'redis' | 'local';

export interface Reservation {
  ok: true;
  readonly id: string;
  readonly keyId: string | null;
  readonly accessTokenId: string | null;
  readonly amount: UsageAmount;
  readonly store: ReservationStore;
  /** The counters it holds (`key:<id>`, `budget:<id>`), as this instance knew them. */
  readonly counters: readonly string[];
  /** Set by the first settle or release; a second one is ignored. */
  ended: boolean;
}

export const amountOf = (amount: UsageAmount, unit: LimitUnit): number =>
  unit === 'tokens' ? amount.tokens : unit === 'requests' ? amount.requests : amount.usd;

export const ZERO: UsageAmount = Object.freeze({ tokens: 0, usd: 0, requests: 0 });
