import { Transform, Type } from 'class-transformer';
import {
  ArrayMaxSize,
  IsIn,
  ValidateNested,
  ArrayMinSize,
  IsArray,
  IsISO8601,
  IsOptional,
  IsString,
  Matches,
  MaxLength,
  MinLength,
  registerDecorator,
  type ValidationOptions,
} from 'class-validator';
import { normalizeIpRule } from '../ip-rules';
import { IsWholeNumber } from '../../common/validators';
import { TOKEN_SCOPES } from '../access-tokens.constants';
import { BudgetDto } from './budget.dto';

const IP_RULE_MESSAGE =
  'each allowedIps entry must be an IPv4 or IPv6 address or a CIDR range such as 10.0.0.0/8 or 2001:db8::/32';

/** An IPv4/IPv6 address or CIDR range, as `normalizeIpRule` accepts it. */
function IsIpRule(options?: ValidationOptions): PropertyDecorator {
  return (target: object, propertyName: string | symbol) =>
    registerDecorator({
      name: 'isIpRule',
      target: target.constructor,
      propertyName: String(propertyName),
      options: { message: IP_RULE_MESSAGE, ...options },
      validator: { validate: (value: unknown) => typeof value === 'string' && normalizeIpRule(value) !== null },
    });
}

const trim = ({ value }: { value: unknown }) => (typeof value === 'string' ? value.trim() : value);

/**
 * A new access token's scope. Lists left out mean "all" (every provider, every model, any
 * address); an empty list is refused rather than guessed at. Rules that need the loaded
 * providers or the clock (known provider ids, an expiry in the future) are checked by the service.
 */
export class CreateAccessTokenDto {
  @Transform(trim)
  @IsString({ message: 'name must be text' })
  @MinLength(1, { message: 'name is required' })
  @MaxLength(120, { message: 'name must be at most 120 characters' })
  name!: string;

  @IsOptional()
  @IsArray({ message: 'providers must be a list of provider ids such as ["openai"]' })
  @ArrayMinSize(1, { message: 'providers must name at least one provider; leave it out to allow every provider' })
  @ArrayMaxSize(50, { message: 'providers must list at most 50 providers' })
  @IsString({ each: true, message: 'providers must be a list of provider ids such as ["openai"]' })
  @Matches(/^[a-z][a-z0-9-]{0,63}$/, {
    each: true,
    message: 'each providers entry must be a provider id such as openai',
  })
  providers?: string[];

  @IsOptional()
  @IsArray({ message: 'models must be a list of model ids such as ["gpt-4o-mini"]' })
  @ArrayMinSize(1, { message: 'models must name at least one model; leave it out to allow every model' })
  @ArrayMaxSize(200, { message: 'models must list at most 200 models' })
  @IsString({ each: true, message: 'models must be a list of model ids such as ["gpt-4o-mini"]' })
  @MinLength(1, { each: true, message: 'each models entry must be a model id' })
  @MaxLength(200, { each: true, message: 'each models entry must be at most 200 characters' })
  models?: string[];

  @IsOptional()
  @IsISO8601({ strict: true }, { message: 'expiresAt must be an ISO 8601 date-time such as 2027-01-31T00:00:00Z' })
  expiresAt?: string;

  @IsOptional()
  @IsWholeNumber('rateLimitPerMinute', 1, 1_000_000)
  rateLimitPerMinute?: number;

  @IsOptional()
  @IsArray({ message: 'allowedIps must be a list of addresses or CIDR ranges such as ["10.0.0.0/8"]' })
  @ArrayMinSize(1, { message: 'allowedIps must name at least one address or range; leave it out to allow any' })
  @ArrayMaxSize(100, { message: 'allowedIps must list at most 100 entries' })
  @IsIpRule({ each: true })
  allowedIps?: string[];

  /** Grants beyond inference: data endpoint groups and `usage:report`. Empty or absent: none. */
  @IsOptional()
  @IsArray({ message: `scopes must be a list drawn from ${TOKEN_SCOPES.join(', ')}` })
  @ArrayMaxSize(TOKEN_SCOPES.length, { message: `scopes must list each of ${TOKEN_SCOPES.join(', ')} at most once` })
  @IsIn(TOKEN_SCOPES, { each: true, message: `each scopes entry must be one of ${TOKEN_SCOPES.join(', ')}` })
  scopes?: string[];

  /** Several at once, at most one per unit and period. */
  @IsOptional()
  @IsArray({ message: 'budgets must be a list of {unit, period, limit}' })
  @ArrayMaxSize(12, { message: 'budgets must list at most 12 budgets' })
  @ValidateNested({ each: true })
  @Type(() => BudgetDto)
  budgets?: BudgetDto[];
}

/** `PATCH`: what changes; fields left out stay as they are. */
export class UpdateAccessTokenDto {
  @IsOptional()
  @IsArray({ message: `scopes must be a list drawn from ${TOKEN_SCOPES.join(', ')}` })
  @ArrayMaxSize(TOKEN_SCOPES.length, { message: `scopes must list each of ${TOKEN_SCOPES.join(', ')} at most once` })
  @IsIn(TOKEN_SCOPES, { each: true, message: `each scopes entry must be one of ${TOKEN_SCOPES.join(', ')}` })
  scopes?: string[];

  @IsOptional()
  @IsArray({ message: 'budgets must be a list of {unit, period, limit}' })
  @ArrayMaxSize(12, { message: 'budgets must list at most 12 budgets' })
  @ValidateNested({ each: true })
  @Type(() => BudgetDto)
  budgets?: BudgetDto[];
}
