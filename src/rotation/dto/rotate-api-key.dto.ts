import { IsISO8601, IsOptional, IsString, MaxLength, MinLength, ValidateIf } from 'class-validator';
import { IsWholeNumber, TrimSecret } from '../../common/validators';

export const MAX_GRACE_SECONDS = 30 * 24 * 3600;

/**
 * With `key`, the admin's new secret replaces the old one; without it the provider plugin mints
 * one. `gracePeriodSeconds`: how long the old secret stays valid at the provider before Keyward
 * retires it (0 = at once). `expiresAt` sets the new secret's expiry (`null` clears it).
 */
export class RotateApiKeyDto {
  @IsOptional()
  @TrimSecret()
  @IsString({ message: 'key must be the new provider key' })
  @MinLength(1, { message: 'key must be the new provider key' })
  @MaxLength(1000, { message: 'key must be at most 1000 characters' })
  key?: string;

  @IsOptional()
  @IsWholeNumber('gracePeriodSeconds', 0, MAX_GRACE_SECONDS)
  gracePeriodSeconds?: number;

  /** The provider's id of the new key, when an admin supplies it (for retiring it later). */
  @IsOptional()
  @IsString()
  @MaxLength(200, { message: 'externalId must be at most 200 characters' })
  externalId?: string;

  @ValidateIf((_o, v) => v !== null && v !== undefined)
  @IsISO8601({ strict: true }, { message: 'expiresAt must be an ISO 8601 date-time such as 2027-01-31T00:00:00Z' })
  expiresAt?: string | null;
}
