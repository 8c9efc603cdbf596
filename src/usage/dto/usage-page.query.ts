import { IsIn, IsOptional, IsString, MaxLength } from 'class-validator';
import { USAGE_RANGES, type UsageRange } from '../usage-math';

/** The console's usage filters; plain query parameters, so they work without JavaScript. */
export class UsagePageQuery {
  @IsOptional()
  @IsIn(USAGE_RANGES, { message: `range must be one of ${USAGE_RANGES.join(', ')}` })
  range: UsageRange = 'month';

  @IsOptional()
  @IsString()
  @MaxLength(64, { message: 'provider must be at most 64 characters' })
  provider?: string;
}
