import { Transform } from 'class-transformer';
import { IsBoolean, IsIn, IsInt, IsOptional, IsString, Max, MaxLength, Min } from 'class-validator';
import { PageQuery } from '../../common/pagination';
import { StrictInteger } from '../../common/validators';

export const KEY_SORTS = ['name', 'provider', 'createdAt', 'expiresAt', 'lastUsed', 'priority'] as const;
const SORT_VALUES = KEY_SORTS.flatMap((s) => [s, `-${s}`]);

export class ListApiKeysQuery extends PageQuery {
  @IsOptional()
  @IsString()
  @MaxLength(64)
  provider?: string;

  @IsOptional()
  @Transform(({ value }) => (value === 'true' ? true : value === 'false' ? false : value))
  @IsBoolean({ message: 'active must be true or false' })
  active?: boolean;

  /** Part of the name (case-insensitive). */
  @IsOptional()
  @IsString()
  @MaxLength(120)
  q?: string;

  /** Only keys that expire within this many days (and have not yet). */
  @IsOptional()
  @StrictInteger()
  @IsInt({ message: 'expiring must be a whole number of days from 1 to 3650' })
  @Min(1, { message: 'expiring must be a whole number of days from 1 to 3650' })
  @Max(3650, { message: 'expiring must be a whole number of days from 1 to 3650' })
  expiring?: number;

  /** A field, `-` in front for descending. */
  @IsOptional()
  @IsIn(SORT_VALUES, { message: `sort must be one of ${KEY_SORTS.join(', ')} (prefix - for descending)` })
  sort: string = '-createdAt';
}
