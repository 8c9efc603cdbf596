/**
 * `keyward/plugin-sdk`: everything a provider plugin may use, as one module. It is the same
 * module as `src/plugin-system/provider-plugin.ts`, which code inside this repository imports.
 */
export * from '../provider-plugin';
