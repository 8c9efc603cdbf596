import { Injectable } from '@nestjs/common';
import type { GatewayPrincipal } from '../access-tokens/access-tokens.service';
import {
  checkPath,
  EndpointTable,
  isDataGroup,
  modelSourceOf,
  routesFromPaths,
  type ProviderEndpoint,
  type ProviderPlugin,
} from '../plugin-system/provider-plugin';
import { ProviderRegistry } from '../plugin-system/provider-registry';
import { GatewayProblem } from './gateway-problem';

/** Where a request goes on the provider, after its path and method were matched. */
export interface Target {
  endpoint: ProviderEndpoint;
  /** Path on the provider's origin, built from validated segments; the query follows as given. */
  upstreamPath: string;
  /** The provider's origin (from its base URL) when the path was checked. */
  origin: string;
}

interface PluginScope {
  table: EndpointTable;
  /** The base URL's origin and path segments (`/openai/v1` → ['openai', 'v1']). */
  origin: string;
  baseSegments: string[];
  baseUrl: string;
  /** Targets of paths already checked, by method, path and query (successes only). */
  resolved: Map<string, Target>;
}

/** At most this many checked paths are remembered per plugin, each at most RESOLVED_KEY_MAX long. */
const RESOLVED_MAX = 1_000;
const RESOLVED_KEY_MAX = 512;

/**
 * What a request may reach: the plugin's declared endpoints (method + path template), the
 * token's providers and endpoint groups, and its models — checked here and nowhere else, before
 * any key is chosen.
 */
@Injectable()
export class GatewayScope {
  private readonly scopes = new WeakMap<ProviderPlugin, PluginScope>();

  constructor(private readonly registry: ProviderRegistry) {}

  plugin(provider: string): ProviderPlugin {
    const plugin = this.registry.get(provider);
    if (!plugin) {
      throw new GatewayProblem(
        404,
        'unknown-provider',
        'Unknown provider',
        `No provider "${provider.slice(0, 60)}" is loaded.`,
        {},
        'unknown-provider',
      );
    }
    return plugin;
  }

  /**
   * `rawPath` is what follows `/proxy/<provider>`, without the query: the provider's own path,
   * base path included (`/v1/chat/completions` for OpenAI).
   */
  resolve(plugin: ProviderPlugin, method: string, rawPath: string, query: string): Target {
    // A gateway sees the same few paths over and over: what was checked once is looked up.
    const scope = this.scopeOf(plugin);
    const key = `${method} ${rawPath}${query}`;
    const known = scope.resolved.get(key);
    if (known) return known;
    const target = this.check(plugin, scope, method, rawPath, query);
    if (key.length <= RESOLVED_KEY_MAX) {
      if (scope.resolved.size >= RESOLVED_MAX) scope.resolved.clear();
      scope.resolved.set(key, target);
    }
    return target;
  }

  private check(plugin: ProviderPlugin, scope: PluginScope, method: string, rawPath: string, query: string): Target {
    const checked = checkPath(rawPath);
    if (!checked.ok) {
      throw new GatewayProblem(
        404,
        'invalid-path',
        'Not a path Keyward forwards',
        `${checked.reason}.`,
        {},
        'invalid-path',
      );
    }
    // The query reaches the provider as sent; it may hold no whitespace, controls or fragment.
    if (!/^[!$&'()*+,./0-9:;=?@A-Z_a-z~%-]*$/.test(query)) {
      throw new GatewayProblem(
        400,
        'invalid-query',
        'Invalid query string',
        'The query string holds characters that are not allowed.',
        {},
        'invalid-path',
      );
    }
    const { segments } = checked;
    const base = scope.baseSegments;
    let underBase = segments.length > base.length;
    for (let i = 0; underBase && i < base.length; i++) underBase = segments[i] === base[i];
    const relative = underBase ? segments.slice(base.length) : [];
    const match = underBase ? scope.table.match(method, relative) : ({ kind: 'none' } as const);
    if (match.kind === 'method-not-allowed') {
      throw new GatewayProblem(
        405,
        'method-not-allowed',
        'Method not allowed',
        `${method} is not allowed here; use ${match.allowed.join(' or ')}.`,
        { allow: match.allowed.join(', ') },
        'method-not-allowed',
      );
    }
    if (match.kind === 'none') {
      throw new GatewayProblem(
        404,
        'unknown-endpoint',
        'Not an endpoint Keyward forwards',
        `${plugin.config.name} endpoints Keyward forwards are listed at GET /api/admin/providers/${plugin.config.id}.`,
        {},
        'unknown-endpoint',
      );
    }
    let upstreamPath = '';
    for (const segment of segments) upstreamPath += '/' + encodeURIComponent(segment);
    return { endpoint: match.endpoint, upstreamPath: upstreamPath + query, origin: scope.origin };
  }

  /** The endpoint on an OpenAI-compatible plugin that the `/v1` entry point serves, if it has it. */
  compatible(plugin: ProviderPlugin, method: string, relative: string[]): Target | undefined {
    const scope = this.scopeOf(plugin);
    const match = scope.table.match(method, relative);
    if (match.kind !== 'match') return undefined;
    let upstreamPath = '';
    for (const segment of [...scope.baseSegments, ...relative]) upstreamPath += '/' + encodeURIComponent(segment);
    return { endpoint: match.endpoint, upstreamPath, origin: scope.origin };
  }

  /** The token's providers and endpoint groups: data groups need an explicit grant. */
  grant(principal: GatewayPrincipal, provider: string, endpoint: ProviderEndpoint): void {
    if (principal.providers && !principal.providers.includes(provider)) {
      throw new GatewayProblem(
        403,
        'provider-not-allowed',
        'Provider not allowed',
        `This access token may not use ${provider}.`,
        {},
        'provider-not-allowed',
      );
    }
    if (isDataGroup(endpoint.group) && !principal.scopes.has(endpoint.group)) {
      throw new GatewayProblem(
        403,
        'scope-not-granted',
        'Endpoint group not granted',
        `This access token has no "${endpoint.group}" grant; an admin can add it on the token's page.`,
        {},
        'scope-not-granted',
      );
    }
  }

  /**
   * A token with a model list fails closed: the model must be readable from the request and be
   * on the list. `model` is null when the request names none (or it could not be read).
   */
  model(principal: GatewayPrincipal, endpoint: ProviderEndpoint, model: string | null): void {
    if (!principal.models) return;
    if (modelSourceOf(endpoint) === 'none' && model === null) return;
    if (model === null) {
      throw new GatewayProblem(
        403,
        'model-not-allowed',
        'Model required',
        'This access token is limited to certain models, and no model could be read from the request (send JSON, or a form with a "model" field).',
        {},
        'model-unreadable',
      );
    }
    if (!principal.models.includes(model)) {
      throw new GatewayProblem(
        403,
        'model-not-allowed',
        'Model not allowed',
        `This access token may not use ${model.slice(0, 100)}.`,
        {},
        'model-not-allowed',
      );
    }
  }

  private scopeOf(plugin: ProviderPlugin): PluginScope {
    // The base URL is read on every request (tests and admins may change it); the compiled
    // table is kept until it does.
    const baseUrl = plugin.config.baseUrl;
    let scope = this.scopes.get(plugin);
    if (!scope || scope.baseUrl !== baseUrl) {
      const url = new URL(baseUrl);
      scope = {
        table: new EndpointTable(plugin.config.routes ?? routesFromPaths(plugin.config.endpoints)),
        origin: url.origin,
        baseSegments: url.pathname.split('/').filter(Boolean),
        baseUrl,
        resolved: new Map(),
      };
      this.scopes.set(plugin, scope);
    }
    return scope;
  }
}
