import { IsString, MaxLength, MinLength } from 'class-validator';

export class TokenRequestDto {
  @IsString({ message: 'email is required' })
  @MinLength(3, { message: 'email is required' })
  @MaxLength(320, { message: 'email must be at most 320 characters' })
  email!: string;

  @IsString({ message: 'password is required' })
  @MinLength(1, { message: 'password is required' })
  @MaxLength(256, { message: 'password must be at most 256 characters' })
  password!: string;
}
