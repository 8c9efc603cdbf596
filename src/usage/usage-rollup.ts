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
 * upserts those instead of sorting the whole batch twice.
 */
export function rollupsOf(records: readonly UsageRecord[]): RollupRow[] {
  const rows = new Map<string, { row: RollupRow; cost: bigint }>();
  for (const r of records) {
    const model = r.model ?? '';
    const errorType = r.success ? '' : (r.errorType ?? 'error');
    const cost = costUnits(r.cost);
    const at = r.timestamp.getTime();
    for (const bucket of ['hour', 'day'] as const) {
      const start =
        bucket === 'hour' ? at - (((at % HOUR_MS) + HOUR_MS) % HOUR_MS) : at - (((at % DAY_MS) + DAY_MS) % DAY_MS);
      // JSON of the identity: nulls stay apart from the strings "null" (NULLS NOT DISTINCT).
      const identity = JSON.stringify([
        bucket,
        start,
        r.keyId,
        r.accessTokenId,
        r.provider,
        model,
        r.source,
        errorType,
      ]);
      let entry = rows.get(identity);
      if (!entry) {
        entry = {
          row: {
            bucket,
            periodStart: new Date(start),
            keyId: r.keyId,
            accessTokenId: r.accessTokenId,
            provider: r.provider,
            model,
            source: r.source,
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
        rows.set(identity, entry);
      }
      const { row } = entry;
      row.requests++;
      if (!r.success) row.errors++;
      row.inputTokens += r.inputTokens;
      row.outputTokens += r.outputTokens;
      row.totalTokens += r.totalTokens;
      row.latencyMsSum += r.latencyMs;
      if (r.unpriced) row.unpricedRequests++;
      entry.cost += cost;
    }
  }
  return [...rows.values()].map(({ row, cost }) => ({ ...row, cost: unitsToDecimal(cost) }));
}
