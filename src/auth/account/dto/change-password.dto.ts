import { IsString, MaxLength, MinLength } from 'class-validator';
import { PASSWORD_MAX, PASSWORD_MIN } from '../../password';

export class ChangePasswordDto {
  @IsString({ message: 'currentPassword is required' })
  @MinLength(1, { message: 'currentPassword is required' })
  @MaxLength(PASSWORD_MAX, { message: `currentPassword must be at most ${PASSWORD_MAX} characters` })
  currentPassword!: string;

  @IsString({ message: `newPassword must be ${PASSWORD_MIN} to ${PASSWORD_MAX} characters` })
  @MinLength(PASSWORD_MIN, { message: `newPassword must be at least ${PASSWORD_MIN} characters` })
  @MaxLength(PASSWORD_MAX, { message: `newPassword must be at most ${PASSWORD_MAX} characters` })
  newPassword!: string;
}

export class ResetPasswordDto {
  @IsString({ message: `password must be ${PASSWORD_MIN} to ${PASSWORD_MAX} characters` })
  @MinLength(PASSWORD_MIN, { message: `password must be at least ${PASSWORD_MIN} characters` })
  @MaxLength(PASSWORD_MAX, { message: `password must be at most ${PASSWORD_MAX} characters` })
  password!: string;
}
