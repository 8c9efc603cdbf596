import { nextResetAt, periodStart } from './usage-period';

describe('usage periods', () => {
  const wednesday = new Date('2026-11-25T14:30:00Z');

  it('resets daily at the next UTC midnight', () => {
    expect(nextResetAt('daily', wednesday)?.toISOString()).toBe('2026-11-26T00:00:00.000Z');
    expect(periodStart('daily', wednesday)?.toISOString()).toBe('2026-11-25T00:00:00.000Z');
  });

  it('resets weekly on the next Monday, also when today is Monday or Sunday', () => {
    expect(nextResetAt('weekly', wednesday)?.toISOString()).toBe('2026-11-30T00:00:00.000Z');
    expect(nextResetAt('weekly', new Date('2026-11-30T00:00:00Z'))?.toISOString()).toBe('2026-12-07T00:00:00.000Z');
    expect(nextResetAt('weekly', new Date('2026-11-29T23:59:59Z'))?.toISOString()).toBe('2026-11-30T00:00:00.000Z');
    expect(periodStart('weekly', wednesday)?.toISOString()).toBe('2026-11-23T00:00:00.000Z');
  });

  it('resets monthly on the 1st, across the year end', () => {
    expect(nextResetAt('monthly', wednesday)?.toISOString()).toBe('2026-12-01T00:00:00.000Z');
    expect(nextResetAt('monthly', new Date('2026-12-31T23:00:00Z'))?.toISOString()).toBe('2027-01-01T00:00:00.000Z');
  });

  it('never resets a lifetime budget', () => {
    expect(nextResetAt('never', wednesday)).toBeNull();
    expect(periodStart('never', wednesday)).toBeNull();
  });
});
