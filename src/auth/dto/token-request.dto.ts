import { IsOptional, IsString, MaxLength, MinLength } from 'class-validator';

export class TokenRequestDto {
  @IsString({ message: 'email is required' })
  @MinLength(3, { message: 'email is required' })
  @MaxLength(320, { message: 'email must be at most 320 characters' })
  email!: string;

  @IsString({ message: 'password is required' })
  @MinLength(1, { message: 'password is required' })
  @MaxLength(256, { message: 'password must be at most 256 characters' })
  password!: string;

  /** A current TOTP code (or a recovery code): the token then carries a fresh step-up. */
  @IsOptional()
  @IsString({ message: 'mfaCode must be a string' })
  @MaxLength(32, { message: 'mfaCode must be at most 32 characters' })
  mfaCode?: string;
}
