import { IsISO8601, IsOptional, IsString, MaxLength, MinLength, ValidateIf } from 'class-validator';
import { IsWholeNumber } from '../../common/validators';

/** PATCH: only the fields sent change; `null` clears an optional one. The secret never changes here. */
export class UpdateApiKeyDto {
  @IsOptional()
  @IsString({ message: 'name must be text' })
  @MinLength(1, { message: 'name is required' })
  @MaxLength(120, { message: 'name must be at most 120 characters' })
  name?: string;

  @ValidateIf((_o, v) => v !== null && v !== undefined)
  @IsString()
  @MaxLength(200, { message: 'organizationId must be at most 200 characters' })
  organizationId?: string | null;

  @ValidateIf((_o, v) => v !== null && v !== undefined)
  @IsString()
  @MaxLength(200, { message: 'projectId must be at most 200 characters' })
  projectId?: string | null;

  @ValidateIf((_o, v) => v !== null && v !== undefined)
  @IsString()
  @MaxLength(200, { message: 'externalId must be at most 200 characters' })
  externalId?: string | null;

  @ValidateIf((_o, v) => v !== null && v !== undefined)
  @IsString({ message: 'managementKey must be the provider management key' })
  @MinLength(1, { message: 'managementKey must be the provider management key' })
  @MaxLength(1000, { message: 'managementKey must be at most 1000 characters' })
  managementKey?: string | null;

  @ValidateIf((_o, v) => v !== null && v !== undefined)
  @IsISO8601({ strict: true }, { message: 'expiresAt must be an ISO 8601 date-time such as 2027-01-31T00:00:00Z' })
  expiresAt?: string | null;

  @ValidateIf((_o, v) => v !== null && v !== undefined)
  @IsString({ message: 'rotationSchedule must be a cron expression such as "0 3 * * 1"' })
  @MaxLength(100, { message: 'rotationSchedule must be at most 100 characters' })
  rotationSchedule?: string | null;

  @IsOptional()
  @IsWholeNumber('priority', 0, 1000, ' (lower is tried first)')
  priority?: number;

  @IsOptional()
  @IsWholeNumber('weight', 1, 1000)
  weight?: number;
}
