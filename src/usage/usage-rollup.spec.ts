import type { UsageRecord } from './usage-recorder';
import { costUnits, rollupsOf, unitsToDecimal } from './usage-rollup';

const record = (over: Partial<UsageRecord>): UsageRecord => ({
  timestamp: new Date('2026-12-03T10:15:00Z'),
  keyId: 'k1',
  provider: 'openai',
  accessTokenId: 't1',
  endpoint: '/v1/chat/completions',
  model: 'gpt-5',
  inputTokens: 10,
  outputTokens: 5,
  cachedInputTokens: 0,
  totalTokens: 15,
  cost: 0.001,
  unpriced: false,
  latencyMs: 3,
  success: true,
  errorType: null,
  status: 200,
  attempt: 1,
  stream: false,
  source: 'gateway',
  ...over,
});

describe('costUnits', () => {
  it.each([
    [0, 0n],
    [1.5, 150_000_000n],
    [0.000065, 6_500n],
    // String(6.5e-7) is "6.5e-7": exponent form is read as the decimal it is.
    [6.5e-7, 65n],
    // Half a unit rounds away from zero, as numeric(18, 8) does.
    [0.000000005, 1n],
    [0.0000000049, 0n],
    [-0.000000005, -1n],
    [1.234567895, 123_456_790n],
    [12345678.12345678, 1_234_567_812_345_678n],
    [Number.NaN, 0n],
  ])('%p is %p units of 1e-8', (cost, units) => {
    expect(costUnits(cost)).toBe(units);
  });

  it('writes units back as numeric text', () => {
    expect(unitsToDecimal(6_500n)).toBe('0.00006500');
    expect(unitsToDecimal(150_000_000n)).toBe('1.50000000');
    expect(unitsToDecimal(-1n)).toBe('-0.00000001');
    expect(unitsToDecimal(0n)).toBe('0.00000000');
  });
});

describe('rollupsOf', () => {
  it('sums a batch into one row per identity in each UTC hour and day', () => {
    const rows = rollupsOf([
      record({}),
      record({ timestamp: new Date('2026-12-03T10:59:59.999Z'), cost: 0.000000005 }),
      record({ timestamp: new Date('2026-12-03T11:00:00Z') }),
      record({ success: false, errorType: null, cost: 0, inputTokens: 0, outputTokens: 0, totalTokens: 0 }),
      record({ keyId: null, success: false, errorType: 'no_key', cost: 0, model: null, unpriced: true }),
    ]);
    const find = (bucket: string, start: string, over: Record<string, unknown> = {}) =>
      rows.filter(
        (r) =>
          r.bucket === bucket &&
          r.periodStart.toISOString() === start &&
          Object.entries(over).every(([k, v]) => (r as unknown as Record<string, unknown>)[k] === v),
      );
    expect(find('hour', '2026-12-03T10:00:00.000Z', { errorType: '', keyId: 'k1' })).toEqual([
      expect.objectContaining({
        requests: 2,
        errors: 0,
        inputTokens: 20,
        totalTokens: 30,
        cost: '0.00100001',
        latencyMsSum: 6,
      }),
    ]);
    expect(find('hour', '2026-12-03T11:00:00.000Z')).toEqual([
      expect.objectContaining({ requests: 1, cost: '0.00100000' }),
    ]);
    expect(find('day', '2026-12-03T00:00:00.000Z', { errorType: '', keyId: 'k1' })).toEqual([
      expect.objectContaining({ requests: 3, cost: '0.00200001' }),
    ]);
    // A failure without a type is an "error"; one without a key or model is kept apart, not merged.
    expect(find('day', '2026-12-03T00:00:00.000Z', { errorType: 'error' })).toEqual([
      expect.objectContaining({ requests: 1, errors: 1, keyId: 'k1' }),
    ]);
    expect(find('day', '2026-12-03T00:00:00.000Z', { errorType: 'no_key' })).toEqual([
      expect.objectContaining({ keyId: null, model: '', errors: 1, unpricedRequests: 1 }),
    ]);
    // Hours: 10:00 and 11:00 successes, the typed and untyped failures; days: the same three kinds.
    expect(rows).toHaveLength(7);
  });
});
