import type { IncomingHttpHeaders, ServerResponse } from 'node:http';
import { brotliDecompressSync, gunzipSync, inflateSync } from 'node:zlib';
import { type Dispatcher, Pool } from 'undici';
import {
  COMMON_FORWARDED_HEADERS,
  FORWARDED_HEADER_PREFIXES,
  type OutgoingRequest,
  type ProviderPlugin,
} from '../plugin-system/provider-plugin';
import type { Call } from './gateway-call';
import type { Relay, RelayResult, UpstreamControl } from './relay';

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
      // An idle connection is closed after 4 s (the official SDKs keep theirs 5 s), sooner where
      // the provider's Keep-Alive header asks: servers that close idle connections after 5 s
      // without saying so (Node's own for streamed answers, uvicorn) otherwise meet a request
      // on a connection they are closing, which fails as 502 before any answer.
      pool = new Pool(origin, {
        connections: 256,
        pipelining: 1,
        keepAliveTimeout: 4_000,
        keepAliveTimeoutThreshold: 1_000,
      });
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

/** How one upstream call ended, as far as the attempt needs to know. */
export type Exchange =
  /** The answer (2xx, 3xx) went to the client through the relay. */
  | { kind: 'relayed'; status: number; result: RelayResult }
  /** The provider refused (4xx, 5xx): its answer, read (at most `errorBodyLimit` bytes), not relayed. */
  | { kind: 'refused'; status: number; headers: Record<string, string | string[] | undefined>; body: Buffer }
  /** No answer came: a connection error, a timeout, or the client left first. */
  | { kind: 'unanswered'; error: Error; clientLeft: boolean };

/** What one upstream call needs besides the request itself. */
export interface ExchangeOptions {
  /** The client's response: leaving before the answer starts cancels the call. */
  res: ServerResponse;
  errorBodyLimit: number;
  /** Called with a success's status and headers; returns the relay that takes the body. */
  relay(status: number, headers: Record<string, string | string[] | undefined>, upstream: UpstreamControl): Relay;
}

/**
 * One call to the provider through undici's dispatch interface: callbacks straight from the
 * HTTP parser, with no Readable body and no promise per chunk in between (the request API costs
 * a good part of a pass-through proxy's time in profiles). Resolves once the client has the
 * answer, or with the refusal or failure for the attempt to act on.
 */
export function exchange(
  dispatcher: Dispatcher,
  request: Dispatcher.DispatchOptions,
  options: ExchangeOptions,
): Promise<Exchange> {
  return new Promise<Exchange>((resolve) => {
    const { res } = options;
    let controller: Dispatcher.DispatchController | undefined;
    let clientLeft = false;
    let relay: Relay | undefined;
    let refused: { status: number; headers: Record<string, string | string[] | undefined> } | undefined;
    const errorChunks: Buffer[] = [];
    let errorBytes = 0;
    const leaveEarly = () => {
      if (res.writableFinished || relay) return;
      clientLeft = true;
      controller?.abort(new Error('the client closed the connection'));
    };
    res.once('close', leaveEarly);
    const control: UpstreamControl = {
      abort: (reason) => controller?.abort(reason),
      resume: () => controller?.resume(),
    };
    const handler: Dispatcher.DispatchHandler = {
      onRequestStart(c) {
        controller = c;
        if (clientLeft) c.abort(new Error('the client closed the connection'));
      },
      onResponseStart(c, status, headers) {
        res.off('close', leaveEarly);
        if (status >= 400) refused = { status, headers: headers as Record<string, string | string[]> };
        else relay = options.relay(status, headers as Record<string, string | string[]>, control);
      },
      onResponseData(c, chunk) {
        if (relay) {
          if (!relay.data(chunk)) c.pause();
        } else if (errorBytes < options.errorBodyLimit) {
          errorChunks.push(chunk);
          errorBytes += chunk.length;
        }
      },
      onResponseEnd() {
        if (relay) {
          relay.end();
          const status = res.statusCode;
          void relay.done.then((result) => resolve({ kind: 'relayed', status, result }));
        } else if (refused) {
          const body = Buffer.concat(errorChunks, errorBytes).subarray(0, options.errorBodyLimit);
          resolve({ kind: 'refused', ...refused, body });
        }
      },
      onResponseError(c, error) {
        res.off('close', leaveEarly);
        if (relay) {
          relay.error(error);
          const status = res.statusCode;
          void relay.done.then((result) => resolve({ kind: 'relayed', status, result }));
        } else if (refused) {
          // The error answer broke off: what came of it is still the provider's answer.
          resolve({ kind: 'refused', ...refused, body: Buffer.concat(errorChunks, errorBytes) });
        } else {
          resolve({ kind: 'unanswered', error, clientLeft });
        }
      },
    };
    dispatcher.dispatch(request, handler);
  });
}

/**
 * The request the plugin authorizes. Its `url` is built only if the plugin reads it (a provider
 * that takes the key in the query would): a URL object per call is a good part of a call's
 * allocations, and the built-in plugins only set headers.
 */
export function outgoingRequest(call: Call): OutgoingRequest & { readonly path: string } {
  let url: URL | undefined;
  return {
    method: call.method,
    headers: upstreamHeaders(call.req.headers, call.plugin, call.body),
    get url(): URL {
      return (url ??= new URL(call.target.upstreamPath, call.origin));
    },
    set url(value: URL) {
      url = value;
    },
    get path(): string {
      return url ? url.pathname + url.search : call.target.upstreamPath;
    },
  };
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
