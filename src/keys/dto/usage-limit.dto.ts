import { StrictNumber } from '../../common/validators';
import { IsIn, IsNumber, IsPositive, Max } from 'class-validator';
import { USAGE_PERIODS, USAGE_UNITS, type UsagePeriod, type UsageUnit } from '../api-key.entity';

/** A budget for one key: e.g. 1,000,000 tokens a month, or 50 USD a week. */
export class UsageLimitDto {
  @StrictNumber()
  @IsNumber({ maxDecimalPlaces: 6 }, { message: 'value must be a number' })
  @IsPositive({ message: 'value must be greater than 0' })
  @Max(1e13, { message: 'value must be at most 10000000000000' })
  value!: number;

  @IsIn(USAGE_UNITS, { message: `unit must be one of ${USAGE_UNITS.join(', ')}` })
  unit!: UsageUnit;

  @IsIn(USAGE_PERIODS, { message: `period must be one of ${USAGE_PERIODS.join(', ')}` })
  period!: UsagePeriod;
}
