import { Pool } from 'undici';

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

/** Request headers that belong to one hop, or carry the client's credentials to Keyward. */
export const DROPPED_REQUEST_HEADERS = new Set([
  'host',
  'connection',
  'keep-alive',
  'proxy-connection',
  'proxy-authorization',
  'transfer-encoding',
  'te',
  'trailer',
  'upgrade',
  'content-length',
  'authorization',
  'x-api-key',
  'api-key',
  'cookie',
  // Asked for uncompressed, so that usage can be read from the answer as it passes.
  'accept-encoding',
  'x-forwarded-for',
  'x-forwarded-host',
  'x-forwarded-proto',
  'forwarded',
]);

export const DROPPED_RESPONSE_HEADERS = new Set([
  'connection',
  'keep-alive',
  'transfer-encoding',
  'trailer',
  'upgrade',
  'proxy-authenticate',
  'set-cookie',
]);
