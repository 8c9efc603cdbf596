import { StrictNumber } from '../../common/validators';
import { IsBoolean, IsIn, IsNumber, IsOptional, IsPositive, Max, ValidateIf } from 'class-validator';
import { USAGE_PERIODS, USAGE_UNITS, type UsagePeriod, type UsageUnit } from '../api-key.entity';

/** `{value, unit, period}` sets the limit; `{value: null}` removes it. */
export class SetLimitsDto {
  @ValidateIf((_o, v) => v !== null)
  @StrictNumber()
  @IsNumber({ maxDecimalPlaces: 6 }, { message: 'value must be a number, or null to remove the limit' })
  @IsPositive({ message: 'value must be greater than 0' })
  @Max(1e13, { message: 'value must be at most 10000000000000' })
  value!: number | null;

  @ValidateIf((o: SetLimitsDto) => o.value !== null)
  @IsIn(USAGE_UNITS, { message: `unit must be one of ${USAGE_UNITS.join(', ')}` })
  unit?: UsageUnit;

  @ValidateIf((o: SetLimitsDto) => o.value !== null)
  @IsIn(USAGE_PERIODS, { message: `period must be one of ${USAGE_PERIODS.join(', ')}` })
  period?: UsagePeriod;

  /** Start counting from zero now (default: keep the count when only the value changes). */
  @IsOptional()
  @IsBoolean({ message: 'resetUsage must be true or false' })
  resetUsage?: boolean;
}
