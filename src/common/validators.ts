import { applyDecorators } from '@nestjs/common';
import { Transform, Type } from 'class-transformer';
import { IsInt, Max, Min } from 'class-validator';

/**
 * A whole number in [min, max], converted from a form's text first. Every failure gives the one
 * message that says what is allowed, e.g. "priority must be a whole number from 0 to 1000".
 */
export function IsWholeNumber(field: string, min: number, max: number, note = ''): PropertyDecorator {
  const message = `${field} must be a whole number from ${min} to ${max}${note}`;
  return applyDecorators(
    Type(() => Number),
    IsInt({ message }),
    Min(min, { message }),
    Max(max, { message }),
  );
}

/**
 * Trims a pasted secret: a key copied from a provider's page often carries a space or a line
 * break at either end, which is never part of the key and would fail its format check.
 */
export const TrimSecret = (): PropertyDecorator =>
  Transform(({ value }: { value: unknown }) => (typeof value === 'string' ? value.trim() : value));
