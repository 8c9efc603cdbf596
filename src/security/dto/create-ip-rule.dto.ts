import { IsIn, IsOptional, IsString, IsUUID, MaxLength, MinLength } from 'class-validator';
import { type Role, ROLES } from '../../auth/roles';

/** An allow rule for one role or one user: `{"role": "admin", "cidr": "203.0.113.0/24"}`. */
export class CreateIpRuleDto {
  @IsOptional()
  @IsIn(ROLES, { message: `role must be one of ${ROLES.join(', ')}` })
  role?: Role;

  @IsOptional()
  @IsUUID('4', { message: 'userId must be a user id' })
  userId?: string;

  @IsString({ message: 'cidr must be an IPv4 or IPv6 address or CIDR range such as 203.0.113.0/24' })
  @MinLength(2, { message: 'cidr must be an IPv4 or IPv6 address or CIDR range such as 203.0.113.0/24' })
  @MaxLength(64, { message: 'cidr must be at most 64 characters' })
  cidr!: string;

  @IsOptional()
  @IsString({ message: 'note must be text' })
  @MaxLength(200, { message: 'note must be at most 200 characters' })
  note?: string;
}
