import { applyDecorators } from '@nestjs/common';
import { Type } from 'class-transformer';
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
