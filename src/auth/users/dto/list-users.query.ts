import { IsIn, IsOptional, IsString, MaxLength } from 'class-validator';
import { PageQuery } from '../../../common/pagination';
import { type Role, ROLES } from '../../roles';

export class ListUsersQuery extends PageQuery {
  @IsOptional()
  @IsString()
  @MaxLength(320)
  q?: string;

  @IsOptional()
  @IsIn(ROLES, { message: `role must be one of ${ROLES.join(', ')}` })
  role?: Role;
}
