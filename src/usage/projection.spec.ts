import { project, type DailyPoint } from './projection';

const series = (start: string, values: number[]): DailyPoint[] =>
  values.map((value, i) => ({
    day: new Date(Date.parse(`${start}T00:00:00Z`) + i * 86_400_000).toISOString().slice(0, 10),
    value,
  }));

describe('project', () => {
  const sut = project;
  const now = new Date('2026-12-10T12:00:00Z');
  const periodEnd = new Date('2027-01-01T00:00:00Z');

  it('fits the least-squares line over the days, x counted from the first day', () => {
    const result = sut(series('2026-12-01', [1, 3, 5, 7]), { used: 16, limit: null, now, periodEnd });
    expect(result.slopePerDay).toBeCloseTo(2);
    expect(result.intercept).toBeCloseTo(1);
  });

  it('places points by their date, not their position, and sorts them', () => {
    const points = [
      { day: '2026-12-05', value: 9 },
      { day: '2026-12-01', value: 1 },
    ];
    const result = sut(points, { used: 10, limit: null, now, periodEnd });
    expect(result.slopePerDay).toBeCloseTo(2);
    expect(result.intercept).toBeCloseTo(1);
  });

  it('takes the burn rate from the last seven days only', () => {
    const result = sut(series('2026-12-01', [100, 100, 1, 1, 1, 1, 1, 1, 1]), {
      used: 207,
      limit: null,
      now,
      periodEnd,
    });
    expect(result.burnRatePerDay).toBeCloseTo(1);
  });

  it('carries the burn rate from now to the period end', () => {
    const result = sut(series('2026-12-08', [10, 10, 10]), { used: 30, limit: null, now, periodEnd });
    // 21.5 days from 10 Dec 12:00 to 1 Jan.
    expect(result.projectedAtPeriodEnd).toBeCloseTo(30 + 10 * 21.5);
    expect(result.exceedsOn).toBeNull();
  });

  it('names the day the limit is first exceeded', () => {
    // 100 left at 10 a day: 10 days after 10 Dec 12:00 is 20 Dec 12:00.
    const result = sut(series('2026-12-08', [10, 10, 10]), { used: 900, limit: 1000, now, periodEnd });
    expect(result.exceedsOn).toBe('2026-12-20');
  });

  it('says nothing when the limit outlasts the period', () => {
    const result = sut(series('2026-12-08', [10, 10, 10]), { used: 30, limit: 1000, now, periodEnd });
    expect(result.exceedsOn).toBeNull();
  });

  it('names today when the limit is already exceeded', () => {
    const result = sut(series('2026-12-08', [0, 0, 0]), { used: 1001, limit: 1000, now, periodEnd });
    expect(result.exceedsOn).toBe('2026-12-10');
  });

  it('is flat and quiet without points', () => {
    expect(sut([], { used: 0, limit: 10, now, periodEnd })).toEqual({
      slopePerDay: 0,
      intercept: 0,
      burnRatePerDay: 0,
      projectedAtPeriodEnd: 0,
      exceedsOn: null,
    });
  });

  it('has no slope through a single day', () => {
    const result = sut([{ day: '2026-12-10', value: 5 }], { used: 5, limit: 10, now, periodEnd });
    expect(result.slopePerDay).toBe(0);
    expect(result.intercept).toBe(5);
    expect(result.burnRatePerDay).toBe(5);
    // 5 left at 5 a day: one day after now.
    expect(result.exceedsOn).toBe('2026-12-11');
  });
});
