import { Body, Controller, Delete, Get, HttpCode, Param, Post, Put } from '@nestjs/common';
import { Audit } from '../audit/audit.decorator';
import type { AuthUser } from '../auth/auth.types';
import { CheckPolicies, CurrentUser } from '../auth/decorators';
import { notFound, ValidationProblem } from '../common/problem';
import { SetPricesDto } from './dto/set-prices.dto';
import { VerifyKeyDto } from './dto/verify-key.dto';
import { PricingService } from './pricing.service';
import { toFailedProviderView, toProviderView } from './provider.view';
import { ProviderRegistry } from './provider-registry';

@Controller('api/admin/providers')
export class ProvidersController {
  constructor(
    private readonly registry: ProviderRegistry,
    private readonly pricing: PricingService,
  ) {}

  /** Loaded plugins with the spec's ProviderConfig fields, then the ones that failed and why. */
  @Get()
  @CheckPolicies((ability) => ability.can('read', 'Provider'))
  list() {
    const providers = [
      ...this.registry.loaded().map(toProviderView),
      ...this.registry.failed().map(toFailedProviderView),
    ];
    return { providers, total: providers.length };
  }

  @Get(':id')
  @CheckPolicies((ability) => ability.can('read', 'Provider'))
  get(@Param('id') id: string) {
    const loaded = this.registry.loaded().find((p) => p.manifest.id === id);
    if (loaded) return toProviderView(loaded);
    const failed = this.registry.failed().find((p) => p.id === id);
    if (failed) return toFailedProviderView(failed);
    throw notFound('Provider', id);
  }

  @Get(':id/pricing')
  @CheckPolicies((ability) => ability.can('read', 'Pricing'))
  async getPricing(@Param('id') id: string) {
    return { provider: id, currency: 'USD', per: '1M tokens', prices: await this.pricing.rows(id) };
  }

  @Put(':id/pricing')
  @Audit('pricing.update', 'Provider')
  @CheckPolicies((ability) => ability.can('update', 'Pricing'))
  async setPricing(@Param('id') id: string, @Body() dto: SetPricesDto, @CurrentUser() actor: AuthUser) {
    await this.pricing.set(id, dto.prices, actor.email);
    return this.getPricing(id);
  }

  @Delete(':id/pricing/:model')
  @Audit('pricing.reset', 'Provider')
  @CheckPolicies((ability) => ability.can('update', 'Pricing'))
  async resetPrice(@Param('id') id: string, @Param('model') model: string) {
    if (!(await this.pricing.reset(id, model))) throw notFound('Price override', `${id}/${model}`);
    return this.getPricing(id);
  }

  /**
   * Checks a key with its provider without storing it: the format first (so an obviously wrong
   * key never leaves Keyward), then the provider's cheapest authenticated call.
   */
  @Post(':id/verify-key')
  @HttpCode(200)
  @Audit('provider.verify-key', 'Provider')
  @CheckPolicies((ability) => ability.can('verify', 'ApiKey'))
  async verifyKey(@Param('id') id: string, @Body() dto: VerifyKeyDto) {
    const plugin = this.registry.require(id);
    const format = plugin.checkKeyFormat(dto.key);
    if (!format.ok) throw new ValidationProblem([{ field: 'key', messages: [`expected ${format.expected}`] }]);
    if (plugin.config.requiresOrg && !dto.organizationId) {
      throw new ValidationProblem([
        { field: 'organizationId', messages: [`${plugin.config.name} keys need an organization id`] },
      ]);
    }
    return plugin.verify(dto.key, dto.organizationId);
  }
}
