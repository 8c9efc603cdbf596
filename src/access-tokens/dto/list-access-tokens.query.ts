import { Transform } from 'class-transformer';
import { IsBoolean, IsOptional, IsString, MaxLength } from 'class-validator';
import { PageQuery } from '../../common/pagination';

export class ListAccessTokensQuery extends PageQuery {
  /** true: usable now (not revoked, not expired); false: revoked or expired. */
  @IsOptional()
  @Transform(({ value }) => (value === 'true' ? true : value === 'false' ? false : value === '' ? undefined : value))
  @IsBoolean({ message: 'active must be true or false' })
  active?: boolean;

  /** Part of the name (case-insensitive). */
  @IsOptional()
  @IsString()
  @MaxLength(120, { message: 'q must be at most 120 characters' })
  q?: string;
}
