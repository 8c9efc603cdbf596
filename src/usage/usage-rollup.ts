import type { UsageRecord } from './usage-recorder';

/** One row of `usage_rollups` to add to: its identity and the sums of a batch. */
export interface RollupRow {
  bucket: 'hour' | 'day';
  periodStart: Date;
  keyId: string | null;
  accessTokenId: string | null;
  provider: string;
  model: string;
  source: UsageRecord['source'];
  errorType: string;
  requests: number;
  errors: number;
  inputTokens: number;
  outputTokens: number;
  totalTokens: number;
  /** The sum of the events' costs, each rounded to numeric(18, 8) first, as a decimal string. */
  cost: string;
  latencyMsSum: number;
  unpricedRequests: number;
}

const HOUR_MS = 3_600_000;
const DAY_MS = 86_400_000;
const COST_SCALE = 8;
const DECIMAL = /^(-?)(\d+)(?:\.(\d+))?(?:e([+-]?\d+))?$/i;

/**
 * A cost in units of 1e-8, rounded exactly as PostgreSQL stores it in a numeric(18, 8) column:
 * from the decimal text pg sends for the number (`String(n)`, which may be `6.5e-7`), half away
 * from zero. Summing these integers gives the rollup the very total of its events' costs.
 */
export function costUnits(cost: number): bigint {
  if (!Number.isFinite(cost)) return 0n;
  const match = DECIMAL.exec(String(cost));
  if (!match) return 0n;
  const [, sign, whole, fraction = '', exponent = '0'] = match;
  const digits = BigInt(whole + fraction);
  const shift = Number(exponent) - fraction.length + COST_SCALE;
  let units: bigint;
  if (shift >= 0) {
    units = digits * 10n ** BigInt(shift);
  } else {
    const divisor = 10n ** BigInt(-shift);
    units = digits / divisor;
    if ((digits % divisor) * 2n >= divisor) units += 1n;
  }
  return sign === '-' ? -units : units;
}

/** Units of 1e-8 as numeric text ("-0.00000065"). */
export function unitsToDecimal(units: bigint): string {
  const negative = units < 0n;
  const text = (negative ? -units : units).toString().padStart(COST_SCALE + 1, '0');
  return `${negative ? '-' : ''}${text.slice(0, -COST_SCALE)}.${text.slice(-COST_SCALE)}`;
}

/**
 * The hourly and daily rollup rows a batch of events adds to, one per key, access token,
 * provider, model, source and error type in each UTC hour and day. Done here rather than with a
 * GROUP BY in the insert: a batch of hundreds of events usually makes two rows, so the database
 * upserts those instead of sorting the whole batch twice. Events are summed into hours first and
 * hours into days, so each event is looked at once; the rows come sorted by identity, so that two
 * instances upserting the same rows lock them in the same order (no deadlock).
 */
export function rollupsOf(records: readonly UsageRecord[]): RollupRow[] {
  const hours = new Map<string, Sum>();
  for (const r of records) {
    const model = r.model ?? '';
    const errorType = r.success ? '' : (r.errorType ?? 'error');
    const at = r.timestamp.getTime();
    const start = at - (((at % HOUR_MS) + HOUR_MS) % HOUR_MS);
    // Key and token ids are UUIDs or null, so '' stands for null unambiguously; NUL, the
    // separator, cannot occur in PostgreSQL text.
    const identity = `${start}\0${r.keyId ?? ''}\0${r.accessTokenId ?? ''}\0${r.provider}\0${model}\0${r.source}\0${errorType}`;
    let sum = hours.get(identity);
    if (!sum) {
      sum = newSum('hour', start, r.keyId, r.accessTokenId, r.provider, model, r.source, errorType);
      hours.set(identity, sum);
    }
    const { row } = sum;
    row.requests++;
    if (!r.success) row.errors++;
    row.inputTokens += r.inputTokens;
    row.outputTokens += r.outputTokens;
    row.totalTokens += r.totalTokens;
    row.latencyMsSum += r.latencyMs;
    if (r.unpriced) row.unpricedRequests++;
    sum.cost += costUnits(r.cost);
  }
  const days = new Map<string, Sum>();
  for (const [identity, hour] of hours) {
    const at = hour.row.periodStart.getTime();
    const start = at - (((at % DAY_MS) + DAY_MS) % DAY_MS);
    const dayIdentity = `${start}${identity.slice(identity.indexOf('\0'))}`;
    let sum = days.get(dayIdentity);
    if (!sum) {
      const h = hour.row;
      sum = newSum('day', start, h.keyId, h.accessTokenId, h.provider, h.model, h.source, h.errorType);
      days.set(dayIdentity, sum);
    }
    const { row } = sum;
    const h = hour.row;
    row.requests += h.requests;
    row.errors += h.errors;
    row.inputTokens += h.inputTokens;
    row.outputTokens += h.outputTokens;
    row.totalTokens += h.totalTokens;
    row.latencyMsSum += h.latencyMsSum;
    row.unpricedRequests += h.unpricedRequests;
    sum.cost += hour.cost;
  }
  const sorted = (sums: Map<string, Sum>) =>
    [...sums.entries()]
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
      .map(([, { row, cost }]) => ({ ...row, cost: unitsToDecimal(cost) }));
  return [...sorted(hours), ...sorted(days)];
}

interface Sum {
  row: RollupRow;
  cost: bigint;
}

function newSum(
  bucket: RollupRow['bucket'],
  start: number,
  keyId: string | null,
  accessTokenId: string | null,
  provider: string,
  model: string,
  source: RollupRow['source'],
  errorType: string,
): Sum {
  return {
    row: {
      bucket,
      periodStart: new Date(start),
      keyId,
      accessTokenId,
      provider,
      model,
      source,
      errorType,
      requests: 0,
      errors: 0,
      inputTokens: 0,
      outputTokens: 0,
      totalTokens: 0,
      cost: '',
      latencyMsSum: 0,
      unpricedRequests: 0,
    },
    cost: 0n,
  };
}
