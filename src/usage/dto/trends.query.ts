import { IsIn, IsOptional } from 'class-validator';

export const TREND_GROUPS = ['model', 'token'] as const;
export type TrendGroup = (typeof TREND_GROUPS)[number];

/** `GET /api/admin/usage/trends`: 30-day series and projections per model or access token. */
export class TrendsQuery {
  @IsOptional()
  @IsIn(TREND_GROUPS, { message: `groupBy must be one of ${TREND_GROUPS.join(', ')}` })
  groupBy: TrendGroup = 'model';
}
