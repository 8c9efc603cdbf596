import { Inject, Injectable, Logger, OnApplicationBootstrap } from '@nestjs/common';
import { ProblemException } from '../common/problem';
import type { FailedPlugin, LoadedPlugin, PluginLoadResult } from './plugin-loader';
import { LOADED_PLUGINS } from './plugin-system.constants';
import type { ProviderPlugin } from './provider-plugin';

/** The providers this instance can talk to, by id; the rest of the app asks here, never the loader. */
@Injectable()
export class ProviderRegistry implements OnApplicationBootstrap {
  private readonly logger = new Logger('Plugins');
  private readonly byId: ReadonlyMap<string, LoadedPlugin>;

  constructor(@Inject(LOADED_PLUGINS) private readonly result: PluginLoadResult) {
    this.byId = new Map(result.loaded.map((p) => [p.manifest.id, p]));
  }

  /** Says what loaded and, loudly, what did not: a skipped plugin is never a silent one. */
  onApplicationBootstrap(): void {
    for (const p of this.result.loaded) {
      this.logger.log(
        `Provider plugin ${p.manifest.id} ${p.manifest.version} loaded${p.builtIn ? '' : ` from ${p.source}`}`,
      );
    }
    for (const f of this.result.failed) {
      this.logger.error(`Provider plugin ${f.id} was NOT loaded (${f.source}): ${f.reason}`);
    }
  }

  get(id: string): ProviderPlugin | undefined {
    return this.byId.get(id)?.plugin;
  }

  /** The plugin, or a 404 problem naming the providers that do exist. */
  require(id: string): ProviderPlugin {
    const plugin = this.get(id);
    if (!plugin) {
      throw new ProblemException(
        404,
        'unknown-provider',
        'Unknown provider',
        `No provider "${id}". Known: ${this.ids().join(', ')}.`,
      );
    }
    return plugin;
  }

  ids(): string[] {
    return [...this.byId.keys()];
  }

  loaded(): readonly LoadedPlugin[] {
    return this.result.loaded;
  }

  failed(): readonly FailedPlugin[] {
    return this.result.failed;
  }
}
