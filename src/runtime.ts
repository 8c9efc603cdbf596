import type { DestinationStream } from 'pino';
import type { KeywardConfig } from './config/config';
import type { Keyring } from './crypto/keyring';
import type { PluginLoadResult } from './plugin-system/plugin-loader';

/** Facts established before the application module is built (see main.ts). */
export interface RuntimeInfo {
  databaseMode: 'embedded' | 'external';
  masterKeySource: 'environment' | 'file';
  masterKeyVersion: number;
  version: string;
}

export interface KeywardRuntime {
  config: KeywardConfig;
  keyring: Keyring;
  databaseUrl: string;
  info: RuntimeInfo;
  /** Provider plugins, loaded before the application module is built. */
  plugins: PluginLoadResult;
  /** Where logs go; stdout unless a test captures them. */
  logStream?: DestinationStream;
}

export const RUNTIME_INFO = Symbol('RUNTIME_INFO');
