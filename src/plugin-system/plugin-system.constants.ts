/** The plugins main.ts loaded before the application module was built (a PluginLoadResult). */
export const LOADED_PLUGINS = Symbol('LOADED_PLUGINS');
