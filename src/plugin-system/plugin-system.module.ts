import { DynamicModule, Global, Module } from '@nestjs/common';
import type { PluginLoadResult } from './plugin-loader';
import { LOADED_PLUGINS } from './plugin-system.constants';
import { PricingService } from './pricing.service';
import { ProviderRegistry } from './provider-registry';
import { ProvidersAdminController } from './providers.admin.controller';
import { ProvidersController } from './providers.controller';

/**
 * Serves the plugins main.ts loaded before the module graph was built (so a plugin can never
 * change what the graph contains half-way through), plus their pricing.
 */
@Global()
@Module({})
export class PluginSystemModule {
  static forRoot(plugins: PluginLoadResult): DynamicModule {
    return {
      module: PluginSystemModule,
      controllers: [ProvidersController, ProvidersAdminController],
      providers: [{ provide: LOADED_PLUGINS, useValue: plugins }, ProviderRegistry, PricingService],
      exports: [ProviderRegistry, PricingService],
    };
  }
}
