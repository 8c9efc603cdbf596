import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import * as path from 'node:path';
import * as semver from 'semver';
import type { ProviderPlugin } from './provider-plugin';

/** The `keyward` block of a plugin's package.json. */
export interface PluginManifest {
  id: string;
  version: string;
  keywardRange: string;
  entry: string;
}

export interface LoadedPlugin {
  manifest: PluginManifest;
  plugin: ProviderPlugin;
  /** The package folder, for messages. */
  source: string;
  builtIn: boolean;
}

export interface FailedPlugin {
  /** The manifest id when it could be read, else the folder or package name. */
  id: string;
  source: string;
  reason: string;
  builtIn: boolean;
}

export interface PluginLoadResult {
  loaded: LoadedPlugin[];
  failed: FailedPlugin[];
}

/** Two plugins claim one id: which one serves that provider would be a guess, so Keyward stops. */
export class PluginConflictError extends Error {
  constructor(id: string, first: string, second: string) {
    super(`two plugins have the id "${id}": ${first} and ${second}. Remove one, or give one another id.`);
    this.name = 'PluginConflictError';
  }
}

class PluginRejected extends Error {}

export const PLUGIN_ID = /^[a-z][a-z0-9-]*$/;
const MANIFEST_KEYS = ['id', 'version', 'keywardRange', 'entry'];
const REQUIRED_FUNCTIONS = [
  'authorize',
  'verify',
  'usageFrom',
  'createStreamTap',
  'classifyError',
  'rateLimitsFrom',
  'checkKeyFormat',
] as const;
const AUTH_METHODS = ['bearer', 'header', 'query'];

export interface PluginLoaderOptions {
  /** Folder holding the built-in plugin packages (`plugins/`). */
  builtInDir: string;
  /**
   * Where the built-ins' compiled code lives when it is not beside the manifest (production runs
   * `dist/plugins/<id>/index.js`, while the manifests stay in `plugins/<id>/package.json`).
   */
  builtInCodeDir?: string;
  /** `KEYWARD_PLUGINS`: paths (absolute, or relative to `cwd`) or package names. */
  extra: string[];
  keywardVersion: string;
  cwd?: string;
}

/**
 * Loads every plugin before the application module is built. One broken plugin is reported
 * and skipped — never a crash, never a silent skip; only an id claimed twice stops the start.
 */
export function loadPlugins(options: PluginLoaderOptions): PluginLoadResult {
  const result: PluginLoadResult = { loaded: [], failed: [] };
  const cwd = options.cwd ?? process.cwd();
  const candidates: { dir: string; builtIn: boolean; codeDir: string }[] = [];

  for (const name of existsSync(options.builtInDir) ? readdirSync(options.builtInDir).sort() : []) {
    const dir = path.join(options.builtInDir, name);
    if (!statSync(dir).isDirectory() || !existsSync(path.join(dir, 'package.json'))) continue;
    const compiled = options.builtInCodeDir ? path.join(options.builtInCodeDir, name) : dir;
    candidates.push({ dir, builtIn: true, codeDir: existsSync(compiled) ? compiled : dir });
  }
  for (const spec of options.extra) {
    const dir = locatePackage(spec, cwd);
    if (!dir) {
      result.failed.push({
        id: spec,
        source: spec,
        builtIn: false,
        reason: 'not found: KEYWARD_PLUGINS names neither a folder with a package.json nor an installed package',
      });
      continue;
    }
    candidates.push({ dir, builtIn: false, codeDir: dir });
  }

  for (const candidate of candidates) {
    let id = path.basename(candidate.dir);
    try {
      const manifest = readManifest(candidate.dir);
      id = manifest.id;
      if (!semver.satisfies(options.keywardVersion, manifest.keywardRange, { includePrerelease: true })) {
        throw new PluginRejected(
          `incompatible: it needs Keyward ${manifest.keywardRange}, this is Keyward ${options.keywardVersion}`,
        );
      }
      const plugin = instantiate(candidate.codeDir, manifest);
      const existing = result.loaded.find((p) => p.manifest.id === manifest.id);
      if (existing) throw new PluginConflictError(manifest.id, existing.source, candidate.dir);
      result.loaded.push({ manifest, plugin, source: candidate.dir, builtIn: candidate.builtIn });
    } catch (error) {
      if (error instanceof PluginConflictError) throw error;
      result.failed.push({ id, source: candidate.dir, builtIn: candidate.builtIn, reason: describe(error) });
    }
  }
  return result;
}

function locatePackage(spec: string, cwd: string): string | undefined {
  const asPath = path.resolve(cwd, spec);
  if (existsSync(path.join(asPath, 'package.json'))) return asPath;
  if (spec.startsWith('.') || path.isAbsolute(spec)) return undefined;
  try {
    return path.dirname(require.resolve(`${spec}/package.json`, { paths: [cwd] }));
  } catch {
    return undefined;
  }
}

/** Strict: an unknown key is more likely a typo than a feature this Keyward knows about. */
export function readManifest(dir: string): PluginManifest {
  let pkg: unknown;
  try {
    pkg = JSON.parse(readFileSync(path.join(dir, 'package.json'), 'utf8'));
  } catch (error) {
    throw new PluginRejected(`bad manifest: package.json is not readable JSON (${describe(error)})`);
  }
  const block = (pkg as { keyward?: unknown } | null)?.keyward;
  if (!block || typeof block !== 'object' || Array.isArray(block)) {
    throw new PluginRejected('bad manifest: package.json has no "keyward" block');
  }
  const manifest = block as Record<string, unknown>;
  const problems: string[] = [];
  const unknown = Object.keys(manifest).filter((k) => !MANIFEST_KEYS.includes(k));
  if (unknown.length) problems.push(`unknown keys ${unknown.join(', ')}`);
  if (typeof manifest.id !== 'string' || !PLUGIN_ID.test(manifest.id)) {
    problems.push('id must match ^[a-z][a-z0-9-]*$');
  }
  if (typeof manifest.version !== 'string' || !semver.valid(manifest.version)) {
    problems.push('version must be a semver version such as 1.0.0');
  }
  if (typeof manifest.keywardRange !== 'string' || !semver.validRange(manifest.keywardRange)) {
    problems.push('keywardRange must be a semver range such as ^0.1.0');
  }
  if (typeof manifest.entry !== 'string' || !manifest.entry || path.isAbsolute(manifest.entry)) {
    problems.push('entry must be a path inside the package');
  }
  if (problems.length) throw new PluginRejected(`bad manifest: ${problems.join('; ')}`);
  return manifest as unknown as PluginManifest;
}

function instantiate(codeDir: string, manifest: PluginManifest): ProviderPlugin {
  const entryPath = path.resolve(codeDir, manifest.entry);
  if (!entryPath.startsWith(path.resolve(codeDir) + path.sep)) {
    throw new PluginRejected('bad manifest: entry points outside the package');
  }
  let resolved: string;
  try {
    resolved = require.resolve(entryPath);
  } catch {
    throw new PluginRejected(`missing entry: ${manifest.entry} (looked for ${entryPath}.js)`);
  }
  let exported: Record<string, unknown>;
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    exported = require(resolved) as Record<string, unknown>;
  } catch (error) {
    throw new PluginRejected(`its entry failed to load: ${describe(error)}`);
  }
  let candidate: unknown = exported.default ?? exported.plugin;
  if (!candidate && typeof exported.createPlugin === 'function') {
    try {
      candidate = (exported.createPlugin as () => unknown)();
    } catch (error) {
      throw new PluginRejected(`createPlugin() threw: ${describe(error)}`);
    }
  }
  return checkPlugin(candidate, manifest);
}

function checkPlugin(candidate: unknown, manifest: PluginManifest): ProviderPlugin {
  if (!candidate || typeof candidate !== 'object') {
    throw new PluginRejected('its entry exports no plugin (expected default, plugin or createPlugin)');
  }
  const plugin = candidate as Partial<ProviderPlugin>;
  const problems: string[] = [];
  const config = plugin.config;
  if (!config || typeof config !== 'object') {
    problems.push('config is missing');
  } else {
    if (config.id !== manifest.id) problems.push(`config.id "${String(config.id)}" differs from the manifest id`);
    if (typeof config.name !== 'string' || !config.name) problems.push('config.name must be a name');
    if (typeof config.apiVersion !== 'string') problems.push('config.apiVersion must be a string');
    if (!AUTH_METHODS.includes(config.authMethod)) problems.push('config.authMethod must be bearer, header or query');
    if (typeof config.requiresOrg !== 'boolean') problems.push('config.requiresOrg must be true or false');
    if (!Array.isArray(config.endpoints)) problems.push('config.endpoints must be a list');
    if (!Array.isArray(config.models)) problems.push('config.models must be a list');
    let baseUrl: unknown;
    try {
      baseUrl = config.baseUrl;
      new URL(String(baseUrl));
    } catch {
      problems.push('config.baseUrl must be a URL');
    }
  }
  if (!plugin.pricing || typeof plugin.pricing !== 'object') problems.push('pricing is missing');
  for (const fn of REQUIRED_FUNCTIONS) {
    if (typeof plugin[fn] !== 'function') problems.push(`${fn}() is missing`);
  }
  if (problems.length) throw new PluginRejected(`not a provider plugin: ${problems.join('; ')}`);
  return plugin as ProviderPlugin;
}

function describe(error: unknown): string {
  const message = error instanceof Error ? error.message : String(error);
  // One line, bounded: a plugin's error text goes to the log and the console.
  return message.split('\n')[0].slice(0, 300);
}
