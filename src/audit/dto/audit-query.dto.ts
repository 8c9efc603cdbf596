import { IsDate, IsIn, IsOptional, IsString, MaxLength } from 'class-validator';
import { PageQuery } from '../../common/pagination';
import { CalendarDate } from '../../common/validators';
import { AUDIT_OUTCOMES, type AuditOutcome } from '../audit-entry.entity';

export class AuditQueryDto extends PageQuery {
  @IsOptional()
  @IsString()
  @MaxLength(320)
  actor?: string;

  /** Exact action, or a prefix ending in "." (e.g. `auth.`). */
  @IsOptional()
  @IsString()
  @MaxLength(100)
  action?: string;

  /** A target id or a target type. */
  @IsOptional()
  @IsString()
  @MaxLength(200)
  target?: string;

  @IsOptional()
  @IsIn(AUDIT_OUTCOMES, { message: `outcome must be one of ${AUDIT_OUTCOMES.join(', ')}` })
  outcome?: AuditOutcome;

  @IsOptional()
  @CalendarDate()
  @IsDate({ message: 'from must be an ISO 8601 date-time' })
  from?: Date;

  @IsOptional()
  @CalendarDate()
  @IsDate({ message: 'to must be an ISO 8601 date-time' })
  to?: Date;
}
