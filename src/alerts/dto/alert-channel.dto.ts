import { PartialType, OmitType } from '@nestjs/mapped-types';
import { Transform } from 'class-transformer';
import {
  ArrayMaxSize,
  ArrayMinSize,
  IsArray,
  IsBoolean,
  IsEmail,
  IsIn,
  IsOptional,
  IsString,
  IsUrl,
  MaxLength,
  MinLength,
} from 'class-validator';
import { IsWholeNumber } from '../../common/validators';
import { CHANNEL_TYPES, type ChannelType } from '../alert.types';

const trim = ({ value }: { value: unknown }) => (typeof value === 'string' ? value.trim() : value);
const URL_OPTIONS = { require_tld: false, protocols: ['http', 'https'], require_protocol: true };

/**
 * A place alerts go. What a type needs (a URL for a webhook, a Slack URL, an SMTP server and
 * recipients for email) is checked against the type by the service. Secrets (signing secret,
 * Slack URL, SMTP password) are sealed on arrival and never answered back.
 */
export class CreateAlertChannelDto {
  @Transform(trim)
  @IsString({ message: 'name must be text' })
  @MinLength(1, { message: 'name is required' })
  @MaxLength(120, { message: 'name must be at most 120 characters' })
  name!: string;

  @IsIn(CHANNEL_TYPES, { message: `type must be one of ${CHANNEL_TYPES.join(', ')}` })
  type!: ChannelType;

  @IsOptional()
  @IsBoolean({ message: 'enabled must be true or false' })
  enabled?: boolean;

  /** Also send the daily and monthly reports here. */
  @IsOptional()
  @IsBoolean({ message: 'reports must be true or false' })
  reports?: boolean;

  /** webhook: where the JSON is POSTed. */
  @IsOptional()
  @Transform(trim)
  @IsUrl(URL_OPTIONS, { message: 'url must be an http(s) URL such as https://hooks.example.com/keyward' })
  @MaxLength(2000, { message: 'url must be at most 2000 characters' })
  url?: string;

  /** webhook: the HMAC key; generated (and answered once) when left out. */
  @IsOptional()
  @IsString({ message: 'signingSecret must be text' })
  @MinLength(16, { message: 'signingSecret must be at least 16 characters' })
  @MaxLength(200, { message: 'signingSecret must be at most 200 characters' })
  signingSecret?: string;

  /** slack: the incoming-webhook URL, which is itself the credential. */
  @IsOptional()
  @Transform(trim)
  @IsUrl(URL_OPTIONS, { message: 'slackUrl must be an http(s) URL such as https://hooks.slack.com/services/…' })
  @MaxLength(2000, { message: 'slackUrl must be at most 2000 characters' })
  slackUrl?: string;

  /** email: the SMTP server. */
  @IsOptional()
  @Transform(trim)
  @IsString({ message: 'smtpHost must be a host name' })
  @MinLength(1, { message: 'smtpHost must be a host name' })
  @MaxLength(255, { message: 'smtpHost must be at most 255 characters' })
  smtpHost?: string;

  @IsOptional()
  @IsWholeNumber('smtpPort', 1, 65535)
  smtpPort?: number;

  /** TLS from the first byte (port 465); otherwise STARTTLS when the server offers it. */
  @IsOptional()
  @IsBoolean({ message: 'smtpSecure must be true or false' })
  smtpSecure?: boolean;

  @IsOptional()
  @IsString({ message: 'smtpUser must be text' })
  @MaxLength(255, { message: 'smtpUser must be at most 255 characters' })
  smtpUser?: string;

  @IsOptional()
  @IsString({ message: 'smtpPassword must be text' })
  @MaxLength(500, { message: 'smtpPassword must be at most 500 characters' })
  smtpPassword?: string;

  @IsOptional()
  @IsEmail({}, { message: 'from must be an email address' })
  from?: string;

  @IsOptional()
  @IsArray({ message: 'to must be a list of email addresses' })
  @ArrayMinSize(1, { message: 'to must name at least one address' })
  @ArrayMaxSize(50, { message: 'to must list at most 50 addresses' })
  @IsEmail({}, { each: true, message: 'each to entry must be an email address' })
  to?: string[];
}

/** PATCH: only the fields sent change; the type stays; a secret sent replaces the stored one. */
export class UpdateAlertChannelDto extends PartialType(OmitType(CreateAlertChannelDto, ['type'] as const)) {}
