import type { FailedPlugin, LoadedPlugin } from './plugin-loader';

export function toProviderView({ manifest, plugin, builtIn }: LoadedPlugin) {
  const { config } = plugin;
  return {
    id: config.id,
    name: config.name,
    version: manifest.version,
    apiVersion: config.apiVersion,
    baseUrl: config.baseUrl,
    authMethod: config.authMethod,
    requiresOrg: config.requiresOrg,
    models: config.models,
    endpoints: config.endpoints,
    status: 'loaded' as const,
    builtIn,
    canProvisionKeys: typeof plugin.provisionKey === 'function' && typeof plugin.retireKey === 'function',
  };
}

export function toFailedProviderView(failed: FailedPlugin) {
  return {
    id: failed.id,
    status: 'failed' as const,
    reason: failed.reason,
    source: failed.source,
    builtIn: failed.builtIn,
  };
}
