import { IsIn, IsISO8601, IsOptional, IsString, MaxLength } from 'class-validator';
import { USAGE_RANGES, type UsageRange } from '../usage-math';

export const PAGE_RANGES = [...USAGE_RANGES, 'custom'] as const;

/** The console's usage filters; plain query parameters, so they work without JavaScript. */
export class UsagePageQuery {
  @IsOptional()
  @IsIn(PAGE_RANGES, { message: `range must be one of ${PAGE_RANGES.join(', ')}` })
  range: UsageRange | 'custom' = 'month';

  /** A custom range: whole UTC days, `to` included. Either date alone makes the range custom. */
  @IsOptional()
  @IsISO8601({ strict: true }, { message: 'From must be a date that exists, such as 2026-01-31' })
  from?: string;

  @IsOptional()
  @IsISO8601({ strict: true }, { message: 'To must be a date that exists, such as 2026-01-31' })
  to?: string;

  @IsOptional()
  @IsString()
  @MaxLength(64, { message: 'provider must be at most 64 characters' })
  provider?: string;
}
