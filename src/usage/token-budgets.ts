import type { DataSource } from 'typeorm';

/** One budget of an access token (table `access_token_budgets`), as reports read it. */
export interface TokenBudget {
  id: string;
  accessTokenId: string;
  unit: 'tokens' | 'requests' | 'usd';
  period: 'daily' | 'weekly' | 'monthly' | 'total';
  limit: number;
  used: number;
  reserved: number;
  resetAt: Date | null;
}

/**
 * The budgets of some access tokens (all, without ids). Token budgets belong to the gateway's
 * admission; until its table exists (an older database, or a build without budgets) there are
 * none, and every page that shows them still works.
 */
export async function tokenBudgets(dataSource: DataSource, tokenIds?: string[]): Promise<TokenBudget[]> {
  const [{ present }] = await dataSource.query<{ present: boolean }[]>(
    `SELECT to_regclass('access_token_budgets') IS NOT NULL AS present`,
  );
  if (!present) return [];
  const rows = await dataSource.query<TokenBudget[]>(
    `SELECT id, access_token_id AS "accessTokenId", unit, period, "limit"::float8 AS "limit", used::float8 AS used,
            coalesce(reserved, 0)::float8 AS reserved, reset_at AS "resetAt"
       FROM access_token_budgets
      WHERE ($1::uuid[] IS NULL OR access_token_id = ANY($1))
      ORDER BY access_token_id, unit, period`,
    [tokenIds ?? null],
  );
  return rows.map((r) => ({ ...r, limit: Number(r.limit), used: Number(r.used), reserved: Number(r.reserved) }));
}
