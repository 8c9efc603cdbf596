import { IsIn, IsISO8601, IsOptional, IsString, IsUUID, MaxLength } from 'class-validator';

export const REPORT_GROUPS = ['key', 'provider', 'model', 'token', 'day'] as const;
export type ReportGroup = (typeof REPORT_GROUPS)[number];

const DATE_MESSAGE = (field: string) =>
  `${field} must be a date such as 2026-01-31 or an ISO 8601 date-time such as 2026-01-31T12:00:00Z`;

/**
 * `GET /api/admin/usage`: a usage report across keys, read from the rollups. A bare date in `to`
 * includes that whole day; a date-time is exclusive. Without `from` and `to`, the last 30 days.
 * Dates must exist on the calendar (2026-02-30 is refused).
 */
export class UsageReportQuery {
  @IsOptional()
  @IsISO8601({ strict: true }, { message: DATE_MESSAGE('from') })
  from?: string;

  @IsOptional()
  @IsISO8601({ strict: true }, { message: DATE_MESSAGE('to') })
  to?: string;

  @IsOptional()
  @IsString()
  @MaxLength(64, { message: 'provider must be at most 64 characters' })
  provider?: string;

  @IsOptional()
  @IsUUID('4', { message: 'keyId must be a UUID' })
  keyId?: string;

  @IsOptional()
  @IsUUID('4', { message: 'accessTokenId must be a UUID' })
  accessTokenId?: string;

  /** `csv` answers CSV, as `Accept: text/csv` does. */
  @IsOptional()
  @IsIn(['json', 'csv'], { message: 'format must be json or csv' })
  format?: 'json' | 'csv';

  @IsOptional()
  @IsIn(REPORT_GROUPS, { message: `groupBy must be one of ${REPORT_GROUPS.join(', ')}` })
  groupBy: ReportGroup = 'key';
}
