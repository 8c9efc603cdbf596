import { IsIn, IsOptional } from 'class-validator';
import { PageQuery } from '../../common/pagination';
import { REPORT_KINDS, type ReportKind } from '../report-data';

export class ListReportsQuery extends PageQuery {
  @IsOptional()
  @IsIn(REPORT_KINDS, { message: `kind must be one of ${REPORT_KINDS.join(', ')}` })
  kind?: ReportKind;
}
