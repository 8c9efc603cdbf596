import { Type } from 'class-transformer';
import {
  IsBoolean,
  IsInt,
  IsISO8601,
  IsNumber,
  IsOptional,
  IsString,
  IsUUID,
  Matches,
  Max,
  MaxLength,
  Min,
} from 'class-validator';
import { IsWholeNumber } from '../../common/validators';

const MAX_TOKENS = 100_000_000;

/** A call an application made to a provider directly, reported so that Keyward counts it. */
export class ReportUsageDto {
  /** The stored key the call used; leave it out for a key Keyward does not hold (name `provider`). */
  @IsOptional()
  @IsUUID('4', { message: 'keyId must be the id of a stored key' })
  keyId?: string;

  @IsOptional()
  @IsString({ message: 'provider must be a provider id such as openai' })
  @Matches(/^[a-z][a-z0-9-]{0,63}$/, { message: 'provider must be a provider id such as openai' })
  provider?: string;

  @IsString()
  @Matches(/^\//, { message: 'endpoint must be a path such as /chat/completions' })
  @MaxLength(200)
  endpoint!: string;

  @IsOptional()
  @IsString()
  @MaxLength(200)
  model?: string;

  @IsWholeNumber('inputTokens', 0, MAX_TOKENS)
  inputTokens!: number;

  @IsWholeNumber('outputTokens', 0, MAX_TOKENS)
  outputTokens!: number;

  @IsOptional()
  @Type(() => Number)
  @IsInt({ message: 'cachedInputTokens must be a whole number, at most inputTokens' })
  @Min(0, { message: 'cachedInputTokens must be a whole number, at most inputTokens' })
  cachedInputTokens?: number;

  /** USD as the provider billed it; when absent Keyward prices the call from its tables. */
  @IsOptional()
  @Type(() => Number)
  @IsNumber({ maxDecimalPlaces: 10 }, { message: 'cost must be a number of USD' })
  @Min(0, { message: 'cost must be a number of USD, 0 or more' })
  @Max(100_000, { message: 'cost must be at most 100000 USD for one call' })
  cost?: number;

  @IsOptional()
  @Type(() => Number)
  @IsInt({ message: 'latencyMs must be a whole number of milliseconds' })
  @Min(0, { message: 'latencyMs must be a whole number of milliseconds' })
  @Max(3_600_000, { message: 'latencyMs must be at most 3600000' })
  latencyMs?: number;

  @IsBoolean({ message: 'success must be true or false' })
  success!: boolean;

  @IsOptional()
  @IsString()
  @Matches(/^[a-z_]{1,40}$/, { message: 'errorType must be a word such as rate_limited' })
  errorType?: string;

  /** When the call happened; defaults to now; at most 7 days back. */
  @IsOptional()
  @IsISO8601({ strict: true }, { message: 'timestamp must be an ISO 8601 date-time' })
  timestamp?: string;
}
