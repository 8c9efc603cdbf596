import { Type } from 'class-transformer';
import {
  ArrayMaxSize,
  IsArray,
  IsIn,
  ValidateNested,
  IsNumber,
  registerDecorator,
  type ValidationArguments,
  type ValidationOptions,
} from 'class-validator';
import { BUDGET_PERIODS, LIMIT_UNITS } from '../../limits/limits.types';

export const BUDGET_LIMIT_MAX = 1e15;

/** A number above 0 (and at most 1e15): a budget of 0 is a revoked token, not a budget. */
function IsPositiveAmount(options?: ValidationOptions): PropertyDecorator {
  return (target: object, propertyName: string | symbol) =>
    registerDecorator({
      name: 'isPositiveAmount',
      target: target.constructor,
      propertyName: String(propertyName),
      options: {
        message: (args: ValidationArguments) => `${args.property} must be a number above 0 and at most 1e15`,
        ...options,
      },
      validator: {
        validate: (value: unknown) =>
          typeof value === 'number' && Number.isFinite(value) && value > 0 && value <= BUDGET_LIMIT_MAX,
      },
    });
}

/** One budget of a token: `limit` tokens, requests or USD per day, week, month or in total. */
export class BudgetDto {
  @IsIn(LIMIT_UNITS, { message: `unit must be one of ${LIMIT_UNITS.join(', ')}` })
  unit!: 'tokens' | 'requests' | 'usd';

  @IsIn(BUDGET_PERIODS, { message: `period must be one of ${BUDGET_PERIODS.join(', ')}` })
  period!: 'daily' | 'weekly' | 'monthly' | 'total';

  // Strict: a JSON number, not a string that looks like one.
  @IsNumber(
    { allowNaN: false, allowInfinity: false, maxDecimalPlaces: 6 },
    { message: 'limit must be a number (at most 6 decimals)' },
  )
  @IsPositiveAmount()
  limit!: number;
}

/** `PUT /api/admin/access-tokens/:id/budgets`: the whole set; an empty list removes every budget. */
export class ReplaceBudgetsDto {
  @IsArray({ message: 'budgets must be a list of {unit, period, limit}' })
  @ArrayMaxSize(12, { message: 'budgets must list at most 12 budgets' })
  @ValidateNested({ each: true })
  @Type(() => BudgetDto)
  budgets!: BudgetDto[];
}
