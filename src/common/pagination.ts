import { IsInt, IsOptional, Max, Min } from 'class-validator';
import { StrictInteger } from './validators';

export class PageQuery {
  @IsOptional()
  @StrictInteger()
  @IsInt({ message: 'page must be a whole number from 1' })
  @Min(1, { message: 'page must be a whole number from 1' })
  page: number = 1;

  @IsOptional()
  @StrictInteger()
  @IsInt({ message: 'pageSize must be a whole number from 1 to 200' })
  @Min(1, { message: 'pageSize must be a whole number from 1 to 200' })
  @Max(200, { message: 'pageSize must be a whole number from 1 to 200' })
  pageSize: number = 50;
}

/** Numbers a pager needs; templates cannot do arithmetic. */
export function pager(page: number, pageSize: number, total: number) {
  const pages = Math.max(1, Math.ceil(total / pageSize));
  return {
    page,
    pageSize,
    total,
    pages,
    hasPrev: page > 1,
    hasNext: page < pages,
    prev: page - 1,
    next: page + 1,
    from: total === 0 ? 0 : (page - 1) * pageSize + 1,
    to: Math.min(total, page * pageSize),
  };
}
