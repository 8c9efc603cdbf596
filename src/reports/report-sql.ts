import type { ReportDimension } from './report-data';

/**
 * The SQL that reports and the usage API share to read the rollups: the figures of a group, and
 * what a group is per dimension. Sums arrive as float8, since bigint and numeric sums would
 * arrive as strings; costs are summed as numeric first, so they are exact to the stored 8 decimals.
 */
export const ROLLUP_METRICS = `coalesce(sum(r.requests), 0)::float8 AS requests,
  coalesce(sum(r.input_tokens), 0)::float8 AS "inputTokens",
  coalesce(sum(r.output_tokens), 0)::float8 AS "outputTokens",
  coalesce(sum(r.total_tokens), 0)::float8 AS tokens,
  coalesce(sum(r.errors), 0)::float8 AS errors,
  coalesce(sum(r.cost), 0)::float8 AS cost,
  coalesce(sum(r.requests) FILTER (WHERE r.source = 'reported'), 0)::float8 AS "reportedRequests",
  coalesce(sum(r.cost) FILTER (WHERE r.source = 'reported'), 0)::float8 AS "reportedCost",
  coalesce(sum(r.requests) FILTER (WHERE r.key_id IS NULL), 0)::float8 AS refusals,
  coalesce(sum(r.unpriced_requests), 0)::float8 AS "unpricedRequests"`;

export const NO_KEY_LABEL = 'No key: refused by Keyward';

export const ROLLUP_DIMENSIONS: Record<
  ReportDimension,
  { select: string; join: string; groupBy: string; orderBy: string }
> = {
  provider: {
    select: `r.provider AS id, r.provider AS label, r.provider`,
    join: '',
    groupBy: 'r.provider',
    orderBy: 'cost DESC, requests DESC, r.provider',
  },
  key: {
    select: `coalesce(r.key_id::text, 'none:' || r.provider) AS id,
      coalesce(k.name, CASE WHEN r.key_id IS NULL THEN '${NO_KEY_LABEL}' ELSE 'deleted key' END) AS label,
      r.provider, r.key_id AS "keyId"`,
    join: 'LEFT JOIN api_keys k ON k.id = r.key_id',
    groupBy: 'r.key_id, k.name, r.provider',
    orderBy: 'cost DESC, requests DESC, label, id',
  },
  model: {
    select: `r.provider || '/' || r.model AS id, coalesce(nullif(r.model, ''), 'unknown model') AS label, r.provider`,
    join: '',
    groupBy: 'r.provider, r.model',
    orderBy: 'cost DESC, requests DESC, r.provider, r.model',
  },
  token: {
    select: `coalesce(r.access_token_id::text, 'none') AS id,
      coalesce(t.name, CASE WHEN r.access_token_id IS NULL THEN 'no access token' ELSE 'deleted token' END) AS label,
      NULL::text AS provider, r.access_token_id AS "tokenId"`,
    join: 'LEFT JOIN access_tokens t ON t.id = r.access_token_id',
    groupBy: 'r.access_token_id, t.name',
    orderBy: 'cost DESC, requests DESC, label, id',
  },
};
