import { IsISO8601, IsString } from 'class-validator';

const DATE_MESSAGE = (field: string) => `${field} must be a date such as 2026-01-31`;

/** `POST /api/admin/reports`: a report over whole UTC days, `from` to `to` included. */
export class CreateReportDto {
  @IsString({ message: DATE_MESSAGE('from') })
  @IsISO8601({ strict: true }, { message: DATE_MESSAGE('from') })
  from!: string;

  @IsString({ message: DATE_MESSAGE('to') })
  @IsISO8601({ strict: true }, { message: DATE_MESSAGE('to') })
  to!: string;
}
