import { Transform } from 'class-transformer';
import { IsIn, IsISO8601, IsOptional } from 'class-validator';
import { PageQuery } from '../../common/pagination';
import { ALERT_KINDS, ALERT_STATES, type AlertKind, type AlertState, SEVERITIES } from '../alert.types';
import type { AlertSeverity } from '../alert-events.service';

/** The console's filter form sends every field; an empty one means "any". */
const blankIsAny = ({ value }: { value: unknown }) => (value === '' ? undefined : value);

export class ListAlertsQuery extends PageQuery {
  @IsOptional()
  @Transform(blankIsAny)
  @IsIn(ALERT_STATES, { message: `state must be one of ${ALERT_STATES.join(', ')}` })
  state?: AlertState;

  @IsOptional()
  @Transform(blankIsAny)
  @IsIn(SEVERITIES, { message: `severity must be one of ${SEVERITIES.join(', ')}` })
  severity?: AlertSeverity;

  @IsOptional()
  @Transform(blankIsAny)
  @IsIn(ALERT_KINDS, { message: `kind must be one of ${ALERT_KINDS.join(', ')}` })
  kind?: AlertKind;

  @IsOptional()
  @Transform(blankIsAny)
  @IsISO8601({}, { message: 'from must be a date or date-time such as 2026-12-01' })
  from?: string;

  @IsOptional()
  @Transform(blankIsAny)
  @IsISO8601({}, { message: 'to must be a date or date-time such as 2026-12-31' })
  to?: string;
}
