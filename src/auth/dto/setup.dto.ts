import { Transform } from 'class-transformer';
import { IsEmail, IsString, MaxLength, MinLength } from 'class-validator';
import { PASSWORD_MAX, PASSWORD_MIN } from '../password';

export class SetupDto {
  @IsString()
  @MaxLength(200)
  token!: string;

  @Transform(({ value }) => (typeof value === 'string' ? value.trim().toLowerCase() : value))
  @IsEmail({}, { message: 'email must be an email address' })
  @MaxLength(320, { message: 'email must be at most 320 characters' })
  email!: string;

  @IsString({ message: `password must be ${PASSWORD_MIN} to ${PASSWORD_MAX} characters` })
  @MinLength(PASSWORD_MIN, { message: `password must be at least ${PASSWORD_MIN} characters` })
  @MaxLength(PASSWORD_MAX, { message: `password must be at most ${PASSWORD_MAX} characters` })
  password!: string;

  @IsString({ message: 'confirm the password' })
  @MaxLength(PASSWORD_MAX)
  confirmPassword!: string;
}
