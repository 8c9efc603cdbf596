import { Transform } from 'class-transformer';
import { IsBoolean, IsString, Matches, MaxLength } from 'class-validator';

export class MfaCodeDto {
  @IsString({ message: 'code is required: the 6 digits from your authenticator, or a recovery code' })
  @MaxLength(32, { message: 'code must be at most 32 characters' })
  @Matches(/^\s*(\d{6}|[A-Za-z0-9]{5}-?[A-Za-z0-9]{5})\s*$/, {
    message: 'code must be the 6 digits from your authenticator, or a recovery code such as abcde-23456',
  })
  code!: string;
}

export class MfaPolicyDto {
  @Transform(({ value }) => (value === 'true' ? true : value === 'false' ? false : value))
  @IsBoolean({ message: 'requiredForAll must be true or false' })
  requiredForAll!: boolean;
}
