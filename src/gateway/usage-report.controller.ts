import { Body, Controller, HttpCode, Inject, Post, Req } from '@nestjs/common';
import type { Request } from 'express';
import { AccessTokensService } from '../access-tokens/access-tokens.service';
import { RATE_LIMITER } from '../access-tokens/access-tokens.constants';
import type { RateLimiter } from '../access-tokens/rate-limiter';
import { SkipAudit } from '../audit/audit.decorator';
import { Public } from '../auth/decorators';
import { clientIp } from '../common/http';
import { ProblemException, ValidationProblem } from '../common/problem';
import { KeysService } from '../keys/keys.service';
import { PricingService } from '../plugin-system/pricing.service';
import { UsageRecorder } from '../usage/usage-recorder';
import { ReportUsageDto } from './dto/report-usage.dto';

/** Reports per access token and minute when the token sets no rate limit of its own. */
const DEFAULT_REPORTS_PER_MINUTE = 600;
const MAX_AGE_MS = 7 * 86_400_000;

/**
 * `POST /api/usage`: an application that called a provider directly (with a key it got some
 * other way) tells Keyward what the call used, with its access token. Such records count against
 * the key's limit and show in reports like gateway traffic, marked `source: reported`.
 */
@Controller('api/usage')
export class UsageReportController {
  constructor(
    private readonly tokens: AccessTokensService,
    @Inject(RATE_LIMITER) private readonly limiter: RateLimiter,
    private readonly keys: KeysService,
    private readonly pricing: PricingService,
    private readonly recorder: UsageRecorder,
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

    const key = await this.keys.get(dto.keyId).catch(() => null);
    if (!key || key.revokedAt) {
      throw new ValidationProblem([{ field: 'keyId', messages: ['keyId must be the id of an active stored key'] }]);
    }
    if (!this.tokens.allows(principal, key.provider, dto.model)) {
      throw new ProblemException(
        403,
        'provider-not-allowed',
        'Not allowed',
        'This token may not use that key or model.',
      );
    }
    const errors = [];
    const timestamp = dto.timestamp ? new Date(dto.timestamp) : new Date();
    if (timestamp.getTime() > Date.now() + 60_000 || timestamp.getTime() < Date.now() - MAX_AGE_MS) {
      errors.push({ field: 'timestamp', messages: ['timestamp must be within the last 7 days'] });
    }
    if ((dto.cachedInputTokens ?? 0) > dto.inputTokens) {
      errors.push({ field: 'cachedInputTokens', messages: ['cachedInputTokens must be at most inputTokens'] });
    }
    if (errors.length > 0) throw new ValidationProblem(errors);

    const usage = {
      inputTokens: dto.inputTokens,
      outputTokens: dto.outputTokens,
      cachedInputTokens: dto.cachedInputTokens ?? 0,
      totalTokens: dto.inputTokens + dto.outputTokens,
      ...(dto.cost !== undefined ? { costUsd: dto.cost } : {}),
    };
    const priced = await this.pricing.cost(key.provider, dto.model ?? '', usage);
    this.recorder.record({
      timestamp,
      keyId: key.id,
      provider: key.provider,
      accessTokenId: principal.id,
      endpoint: dto.endpoint,
      model: dto.model ?? null,
      ...usage,
      cost: priced.cost,
      unpriced: priced.unpriced,
      latencyMs: dto.latencyMs ?? 0,
      success: dto.success,
      errorType: dto.success ? null : (dto.errorType ?? 'provider_error'),
      status: null,
      attempt: 1,
      stream: false,
      source: 'reported',
    });
    return {
      accepted: true,
      keyId: key.id,
      totalTokens: usage.totalTokens,
      cost: priced.cost,
      unpriced: priced.unpriced,
    };
  }
}
