import { IsBoolean, IsIn, IsOptional } from 'class-validator';
import { type Role, ROLES } from '../../roles';

export class UpdateUserDto {
  @IsOptional()
  @IsIn(ROLES, { message: `role must be one of ${ROLES.join(', ')}` })
  role?: Role;

  @IsOptional()
  @IsBoolean({ message: 'disabled must be true or false' })
  disabled?: boolean;
}
