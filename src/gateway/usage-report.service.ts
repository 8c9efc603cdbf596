import { Inject, Injectable } from '@nestjs/common';
import type { GatewayPrincipal } from '../access-tokens/access-tokens.service';
import { AccessTokensService } from '../access-tokens/access-tokens.service';
import { KEYWARD_CONFIG } from '../config/config.constants';
import type { KeywardConfig } from '../config/config';
import { type FieldError, ProblemException, ValidationProblem } from '../common/problem';
import { KeysService } from '../keys/keys.service';
import { LimitsService } from '../limits/limits.service';
import { PricingService } from '../plugin-system/pricing.service';
import { ProviderRegistry } from '../plugin-system/provider-registry';
import { UsageRecorder } from '../usage/usage-recorder';
import type { ReportUsageDto } from './dto/report-usage.dto';

const MAX_AGE_MS = 7 * 86_400_000;

const forbidden = (slug: string, title: string, detail: string) => new ProblemException(403, slug, title, detail);

/**
 * Usage an application reports for a call it made directly. The report is held to the token: it
 * needs the `usage:report` scope, stays inside the token's providers and models, is capped per
 * record (KEYWARD_USAGE_REPORT_MAX_TOKENS, KEYWARD_USAGE_REPORT_MAX_COST_USD), and counts against
 * the token's budgets and the key's limit like gateway traffic. The call already happened, so it
 * is counted even past a budget; the gateway then refuses the token's next calls.
 */
@Injectable()
export class UsageReportService {
  constructor(
    private readonly tokens: AccessTokensService,
    private readonly keys: KeysService,
    private readonly registry: ProviderRegistry,
    private readonly pricing: PricingService,
    private readonly recorder: UsageRecorder,
    private readonly limits: LimitsService,
    @Inject(KEYWARD_CONFIG) private readonly config: KeywardConfig,
  ) {}

  async report(principal: GatewayPrincipal, dto: ReportUsageDto) {
    if (!principal.scopes.has('usage:report')) {
      throw forbidden(
        'scope-required',
        'Usage reports not allowed',
        'This token may not report usage: an admin must grant it the usage:report scope.',
      );
    }
    const { provider, keyId } = await this.target(dto);
    if (!this.tokens.allows(principal, provider)) {
      throw forbidden('provider-not-allowed', 'Not allowed', `This token may not use ${provider}.`);
    }
    // Fail closed: a token limited to some models cannot report usage of an unnamed one.
    if (principal.models && (dto.model === undefined || !principal.models.includes(dto.model))) {
      throw forbidden(
        'model-not-allowed',
        'Not allowed',
        dto.model === undefined
          ? 'This token is limited to some models; a report must name one of them.'
          : `This token may not use the model ${dto.model}.`,
      );
    }

    const errors: FieldError[] = [];
    const timestamp = dto.timestamp ? new Date(dto.timestamp) : new Date();
    if (timestamp.getTime() > Date.now() + 60_000 || timestamp.getTime() < Date.now() - MAX_AGE_MS) {
      errors.push({ field: 'timestamp', messages: ['timestamp must be within the last 7 days'] });
    }
    if ((dto.cachedInputTokens ?? 0) > dto.inputTokens) {
      errors.push({ field: 'cachedInputTokens', messages: ['cachedInputTokens must be at most inputTokens'] });
    }
    const { usageReportMaxTokens: maxTokens, usageReportMaxCostUsd: maxCost } = this.config.limits;
    const totalTokens = dto.inputTokens + dto.outputTokens;
    if (totalTokens > maxTokens) {
      errors.push({
        field: 'inputTokens',
        messages: [`inputTokens + outputTokens must be at most ${maxTokens} for one record`],
      });
    }
    const usage = {
      inputTokens: dto.inputTokens,
      outputTokens: dto.outputTokens,
      cachedInputTokens: dto.cachedInputTokens ?? 0,
      totalTokens,
      ...(dto.cost !== undefined ? { costUsd: dto.cost } : {}),
    };
    const priced = await this.pricing.cost(provider, dto.model ?? '', usage);
    if (priced.cost > maxCost) {
      errors.push({
        field: 'cost',
        messages: [`the cost of one record must be at most ${maxCost} USD (this one: ${priced.cost})`],
      });
    }
    if (errors.length > 0) throw new ValidationProblem(errors);

    const requests = dto.success ? 1 : 0;
    const counted = this.limits.applies(keyId, principal.id);
    if (counted) {
      this.limits.charge({
        keyId,
        accessTokenId: principal.id,
        actual: { tokens: totalTokens, usd: priced.cost, requests },
      });
    }
    this.recorder.record({
      timestamp,
      keyId,
      provider,
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
      countedByLimits: counted,
    });
    return { accepted: true, keyId, provider, totalTokens, cost: priced.cost, unpriced: priced.unpriced };
  }

  /** The key (when named, it must be active; its provider wins) or the provider the call went to. */
  private async target(dto: ReportUsageDto): Promise<{ provider: string; keyId: string | null }> {
    if (dto.keyId) {
      const key = await this.keys.get(dto.keyId).catch(() => null);
      if (!key || key.revokedAt) {
        throw new ValidationProblem([{ field: 'keyId', messages: ['keyId must be the id of an active stored key'] }]);
      }
      if (dto.provider && dto.provider !== key.provider) {
        throw new ValidationProblem([
          { field: 'provider', messages: [`provider must match the key's provider (${key.provider})`] },
        ]);
      }
      return { provider: key.provider, keyId: key.id };
    }
    if (!dto.provider) {
      throw new ValidationProblem([{ field: 'keyId', messages: ['name the key (keyId) or the provider (provider)'] }]);
    }
    if (!this.registry.get(dto.provider)) {
      throw new ValidationProblem([
        {
          field: 'provider',
          messages: [`unknown provider ${dto.provider}; known providers: ${this.registry.ids().join(', ')}`],
        },
      ]);
    }
    return { provider: dto.provider, keyId: null };
  }
}
