import { PartialType } from '@nestjs/mapped-types';
import { Transform, Type } from 'class-transformer';
import {
  ArrayMaxSize,
  ArrayMinSize,
  IsArray,
  IsBoolean,
  IsIn,
  IsInt,
  IsNumber,
  IsOptional,
  IsString,
  IsUUID,
  Max,
  MaxLength,
  Min,
  MinLength,
} from 'class-validator';
import { IsWholeNumber } from '../../common/validators';
import {
  ALERT_KINDS,
  type AlertKind,
  COST_PERIODS,
  type CostPeriod,
  SCOPE_TYPES,
  type ScopeType,
  SEVERITIES,
} from '../alert.types';
import type { AlertSeverity } from '../alert-events.service';

const trim = ({ value }: { value: unknown }) => (typeof value === 'string' ? value.trim() : value);

/**
 * An alert rule. The settings a kind needs (thresholds for usage, an amount and period for cost,
 * …) are checked against the kind by the service, which names the missing field.
 */
export class CreateAlertRuleDto {
  @Transform(trim)
  @IsString({ message: 'name must be text' })
  @MinLength(1, { message: 'name is required' })
  @MaxLength(120, { message: 'name must be at most 120 characters' })
  name!: string;

  @IsIn(ALERT_KINDS, { message: `kind must be one of ${ALERT_KINDS.join(', ')}` })
  kind!: AlertKind;

  @IsIn(SEVERITIES, { message: `severity must be one of ${SEVERITIES.join(', ')}` })
  severity!: AlertSeverity;

  @IsOptional()
  @IsBoolean({ message: 'enabled must be true or false' })
  enabled?: boolean;

  @IsOptional()
  @IsIn(SCOPE_TYPES, { message: `scopeType must be one of ${SCOPE_TYPES.join(', ')}` })
  scopeType?: ScopeType;

  /** A provider id, key id or token id, as scopeType says; absent for "all". */
  @IsOptional()
  @IsString({ message: 'scopeId must be a provider id, key id or token id' })
  @MaxLength(100, { message: 'scopeId must be at most 100 characters' })
  scopeId?: string;

  @IsOptional()
  @IsArray({ message: 'thresholds must be a list of percents such as [50, 80, 100]' })
  @ArrayMinSize(1, { message: 'thresholds must list at least one percent' })
  @ArrayMaxSize(10, { message: 'thresholds must list at most 10 percents' })
  @Type(() => Number)
  @IsInt({ each: true, message: 'each threshold must be a whole percent from 1 to 1000' })
  @Min(1, { each: true, message: 'each threshold must be a whole percent from 1 to 1000' })
  @Max(1000, { each: true, message: 'each threshold must be a whole percent from 1 to 1000' })
  thresholds?: number[];

  @IsOptional()
  @Type(() => Number)
  @IsNumber(
    { allowNaN: false, allowInfinity: false, maxDecimalPlaces: 2 },
    { message: 'amountUsd must be a USD amount such as 250 or 99.50' },
  )
  @Min(0.01, { message: 'amountUsd must be at least 0.01' })
  @Max(1_000_000_000, { message: 'amountUsd must be at most 1000000000' })
  amountUsd?: number;

  @IsOptional()
  @IsIn(COST_PERIODS, { message: `period must be one of ${COST_PERIODS.join(', ')}` })
  period?: CostPeriod;

  @IsOptional()
  @Type(() => Number)
  @IsNumber(
    { allowNaN: false, allowInfinity: false },
    { message: 'errorRatePercent must be a percent from 0.1 to 100' },
  )
  @Min(0.1, { message: 'errorRatePercent must be a percent from 0.1 to 100' })
  @Max(100, { message: 'errorRatePercent must be a percent from 0.1 to 100' })
  errorRatePercent?: number;

  @IsOptional()
  @IsWholeNumber('windowMinutes', 1, 1440)
  windowMinutes?: number;

  @IsOptional()
  @IsWholeNumber('minRequests', 1, 1_000_000)
  minRequests?: number;

  @IsOptional()
  @IsWholeNumber('withinDays', 0, 365)
  withinDays?: number;

  @IsOptional()
  @IsArray({ message: 'channelIds must be a list of channel ids' })
  @ArrayMaxSize(20, { message: 'channelIds must list at most 20 channels' })
  @IsUUID('4', { each: true, message: 'each channelIds entry must be a channel id' })
  channelIds?: string[];
}

/** PATCH: only the fields sent change; the kind stays. */
export class UpdateAlertRuleDto extends PartialType(CreateAlertRuleDto) {}
