import { CronTime, validateCronExpression } from 'cron';
import cronstrue from 'cronstrue';

/**
 * Rotation schedules are standard 5-field cron expressions (minute hour day month weekday), in
 * UTC. The `cron` package (already under @nestjs/schedule) parses them; cronstrue says them in
 * words for the console. Six-field expressions with seconds are refused: rotating a key more
 * than once a minute is a mistake, not a schedule.
 */
export function checkRotationSchedule(expression: string): string | null {
  const fields = expression.trim().split(/\s+/);
  if (fields.length !== 5) {
    return 'must be a cron expression with 5 fields (minute hour day-of-month month day-of-week), e.g. "0 3 * * 1"';
  }
  const { valid } = validateCronExpression(expression.trim());
  if (!valid) return 'is not a valid cron expression (minute hour day-of-month month day-of-week), e.g. "0 3 * * 1"';
  return null;
}

/** The next time the schedule fires after `from`, in UTC. */
export function nextRotation(expression: string, from: Date = new Date()): Date {
  return new CronTime(expression.trim(), 'UTC').getNextDateFrom(from, 'UTC').toJSDate();
}

export function describeSchedule(expression: string): string {
  try {
    return `${cronstrue.toString(expression.trim(), { use24HourTimeFormat: true, verbose: false })} (UTC)`;
  } catch {
    return expression;
  }
}
