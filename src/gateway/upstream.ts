import type { IncomingHttpHeaders } from 'node:http';
import { brotliDecompressSync, gunzipSync, inflateSync } from 'node:zlib';
import { Pool } from 'undici';
import {
  COMMON_FORWARDED_HEADERS,
  FORWARDED_HEADER_PREFIXES,
  type ProviderPlugin,
} from '../plugin-system/provider-plugin';

/**
 * One keep-alive connection pool per provider origin. undici's Pool is the fastest HTTP client
 * Node has, and reusing connections saves the TCP (and, for real providers, TLS) handshake on
 * every call.
 */
export class UpstreamPools {
  private readonly pools = new Map<string, Pool>();

  for(origin: string): Pool {
    let pool = this.pools.get(origin);
    if (!pool) {
      pool = new Pool(origin, { connections: 256, pipelining: 1, keepAliveTimeout: 30_000 });
      this.pools.set(origin, pool);
    }
    return pool;
  }

  async close(): Promise<void> {
    const pools = [...this.pools.values()];
    this.pools.clear();
    await Promise.all(pools.map((p) => p.destroy().catch(() => undefined)));
  }
}

/**
 * The headers sent to the provider: only those every provider gets (COMMON_FORWARDED_HEADERS,
 * SDK telemetry) and those the plugin lists. Client credentials and account scoping
 * (`OpenAI-Organization`, `OpenAI-Project`, cookies, …) never pass: the stored key's account
 * governs. The answer is asked for uncompressed, so usage can be read from it as it passes.
 */
export function upstreamHeaders(
  incoming: IncomingHttpHeaders,
  plugin: ProviderPlugin,
  body: Buffer | undefined,
): Record<string, string> {
  const allowed = allowedHeaders(plugin);
  const headers: Record<string, string> = {};
  for (const name in incoming) {
    const value = incoming[name];
    if (value === undefined) continue;
    if (!allowed.has(name) && !FORWARDED_HEADER_PREFIXES.some((p) => name.startsWith(p))) continue;
    headers[name] = Array.isArray(value) ? value.join(', ') : value;
  }
  if (body) headers['content-length'] = String(body.length);
  else if (incoming['content-length'] !== undefined) headers['content-length'] = String(incoming['content-length']);
  headers['accept-encoding'] = 'identity';
  return headers;
}

const allowedByPlugin = new WeakMap<ProviderPlugin, ReadonlySet<string>>();

function allowedHeaders(plugin: ProviderPlugin): ReadonlySet<string> {
  let allowed = allowedByPlugin.get(plugin);
  if (!allowed) {
    allowed = new Set([
      ...COMMON_FORWARDED_HEADERS,
      ...(plugin.config.forwardHeaders ?? []).map((h) => h.toLowerCase()),
    ]);
    allowedByPlugin.set(plugin, allowed);
  }
  return allowed;
}

/** A body Keyward must read (errors, usage) although the provider compressed it. */
export function decodeBody(body: Buffer, encoding: string | string[] | undefined): Buffer {
  switch (String(encoding ?? '').toLowerCase()) {
    case 'gzip':
    case 'x-gzip':
      return gunzipSync(body);
    case 'deflate':
      return inflateSync(body);
    case 'br':
      return brotliDecompressSync(body);
    default:
      return body;
  }
}

export const DROPPED_RESPONSE_HEADERS = new Set([
  'connection',
  'keep-alive',
  'transfer-encoding',
  'trailer',
  'upgrade',
  'proxy-authenticate',
  'set-cookie',
]);
