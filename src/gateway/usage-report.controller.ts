import { Body, Controller, HttpCode, Inject, Post, Req } from '@nestjs/common';
import type { Request } from 'express';
import { AccessTokensService } from '../access-tokens/access-tokens.service';
import { RATE_LIMITER } from '../access-tokens/access-tokens.constants';
import type { RateLimiter } from '../access-tokens/rate-limiter';
import { SkipAudit } from '../audit/audit.decorator';
import { Public } from '../auth/decorators';
import { clientIp } from '../common/http';
import { ProblemException } from '../common/problem';
import { ReportUsageDto } from './dto/report-usage.dto';
import { UsageReportService } from './usage-report.service';

/** Reports per access token and minute when the token sets no rate limit of its own. */
const DEFAULT_REPORTS_PER_MINUTE = 600;

/**
 * `POST /api/usage`: an application that called a provider directly (with a key it got some
 * other way) tells Keyward what the call used, with its access token (which needs the
 * `usage:report` scope). Such records count against the key's limit and the token's budgets and
 * show in reports like gateway traffic, marked `source: reported`. Rules: UsageReportService.
 */
@Controller('api/usage')
export class UsageReportController {
  constructor(
    private readonly tokens: AccessTokensService,
    @Inject(RATE_LIMITER) private readonly limiter: RateLimiter,
    private readonly reports: UsageReportService,
  ) {}

  @Post()
  @HttpCode(202)
  @Public()
  // Usage reports are data, not changes an admin made; they are in usage_events.
  @SkipAudit()
  async report(@Req() req: Request, @Body() dto: ReportUsageDto) {
    const header = req.headers.authorization ?? '';
    const raw = /^bearer\s+(kw_\S+)$/i.exec(header)?.[1];
    const principal = raw ? await this.tokens.resolve(raw) : null;
    if (!principal) {
      throw new ProblemException(401, 'unauthenticated', 'Access token required', 'Send "Authorization: Bearer kw_…".');
    }
    if (!this.tokens.ipAllowed(principal, clientIp(req) ?? '')) {
      throw new ProblemException(403, 'ip-not-allowed', 'Address not allowed', 'This token is not allowed from here.');
    }
    const taken = await this.limiter.take(
      `usage-report:${principal.id}`,
      principal.rateLimitPerMinute ?? DEFAULT_REPORTS_PER_MINUTE,
    );
    if (!taken.allowed) {
      req.res?.setHeader('retry-after', String(taken.retryAfterSeconds));
      throw new ProblemException(
        429,
        'rate-limited',
        'Too many usage reports',
        `Try again in ${taken.retryAfterSeconds} s.`,
      );
    }

    return this.reports.report(principal, dto);
  }
}
