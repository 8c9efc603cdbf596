import { TrimSecret } from '../../common/validators';
import { IsOptional, IsString, MaxLength, MinLength } from 'class-validator';

/** Check a key against its provider without storing it. */
export class VerifyKeyDto {
  @TrimSecret()
  @IsString({ message: 'key must be the provider key' })
  @MinLength(1, { message: 'key must be the provider key' })
  @MaxLength(1000, { message: 'key must be at most 1000 characters' })
  key!: string;

  @IsOptional()
  @IsString()
  @MaxLength(200)
  organizationId?: string;
}
