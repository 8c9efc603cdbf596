import { checkRotationSchedule, describeSchedule, nextRotation } from './rotation-schedule';

describe('rotation schedules', () => {
  it('accepts standard five-field cron expressions', () => {
    expect(checkRotationSchedule('0 3 * * 1')).toBeNull();
    expect(checkRotationSchedule('*/15 * * * *')).toBeNull();
    expect(checkRotationSchedule('0 0 1 */3 *')).toBeNull();
  });

  it('refuses nonsense, wrong field counts and out-of-range values with the expected form', () => {
    for (const bad of ['nope', '0 3 * *', '0 0 3 * * 1', '61 * * * *', '0 25 * * *', '0 0 32 * *']) {
      expect(checkRotationSchedule(bad)).toMatch(/cron expression .*e\.g\. "0 3 \* \* 1"/);
    }
  });

  it('computes the next run in UTC', () => {
    const wednesday = new Date('2026-11-25T14:30:00Z');
    expect(nextRotation('0 3 * * 1', wednesday).toISOString()).toBe('2026-11-30T03:00:00.000Z');
    expect(nextRotation('0 0 1 * *', wednesday).toISOString()).toBe('2026-12-01T00:00:00.000Z');
  });

  it('says a schedule in words', () => {
    expect(describeSchedule('0 3 * * 1')).toBe('At 03:00, only on Monday (UTC)');
  });
});
