import { Type } from 'class-transformer';
import { IsISO8601, IsOptional, IsString, Matches, MaxLength, MinLength, ValidateNested } from 'class-validator';
import { UsageLimitDto } from './usage-limit.dto';
import { IsWholeNumber, TrimSecret } from '../../common/validators';

/**
 * The spec's CreateAPIKeyRequest plus failover order and a budget. Rules that need the provider
 * (key format, organization, whether it can mint keys) are checked by KeysService; messages
 * never repeat the submitted value, which may be a secret.
 */
export class CreateApiKeyDto {
  @IsString({ message: 'provider must be a provider id such as openai' })
  @Matches(/^[a-z][a-z0-9-]*$/, { message: 'provider must be a provider id such as openai' })
  @MaxLength(64)
  provider!: string;

  @IsString({ message: 'name must be text' })
  @MinLength(1, { message: 'name is required' })
  @MaxLength(120, { message: 'name must be at most 120 characters' })
  name!: string;

  @TrimSecret()
  @IsString({ message: 'key must be the provider key' })
  @MinLength(1, { message: 'key is required' })
  @MaxLength(1000, { message: 'key must be at most 1000 characters' })
  key!: string;

  @IsOptional()
  @IsString()
  @MaxLength(200, { message: 'organizationId must be at most 200 characters' })
  organizationId?: string;

  /** OpenAI project that new keys are minted in (provisioning). */
  @IsOptional()
  @IsString()
  @MaxLength(200, { message: 'projectId must be at most 200 characters' })
  projectId?: string;

  /** The provider's id for this key (OpenRouter key hash), so it can be retired after rotation. */
  @IsOptional()
  @IsString()
  @MaxLength(200, { message: 'externalId must be at most 200 characters' })
  externalId?: string;

  /** A management/admin key with which the provider plugin can mint replacements. */
  @IsOptional()
  @TrimSecret()
  @IsString({ message: 'managementKey must be the provider management key' })
  @MinLength(1, { message: 'managementKey must be the provider management key' })
  @MaxLength(1000, { message: 'managementKey must be at most 1000 characters' })
  managementKey?: string;

  @IsOptional()
  @IsISO8601({ strict: true }, { message: 'expiresAt must be an ISO 8601 date-time such as 2027-01-31T00:00:00Z' })
  expiresAt?: string;

  @IsOptional()
  @IsString({ message: 'rotationSchedule must be a cron expression such as "0 3 * * 1"' })
  @MaxLength(100, { message: 'rotationSchedule must be at most 100 characters' })
  rotationSchedule?: string;

  @IsOptional()
  @IsWholeNumber('priority', 0, 1000, ' (lower is tried first)')
  priority?: number;

  @IsOptional()
  @IsWholeNumber('weight', 1, 1000)
  weight?: number;

  @IsOptional()
  @ValidateNested()
  @Type(() => UsageLimitDto)
  limit?: UsageLimitDto;
}
