import { Inject, Injectable, Logger, OnModuleDestroy } from '@nestjs/common';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { setTimeout as sleep } from 'node:timers/promises';
import { type Dispatcher, errors as undiciErrors } from 'undici';
import { type GatewayPrincipal, AccessTokensService } from '../access-tokens/access-tokens.service';
import { RATE_LIMITER } from '../access-tokens/access-tokens.constants';
import type { RateLimiter } from '../access-tokens/rate-limiter';
import { problemType } from '../common/problem';
import { KEYWARD_CONFIG } from '../config/config.constants';
import type { KeywardConfig } from '../config/config';
import { PricingService } from '../plugin-system/pricing.service';
import type {
  ClassifiedError,
  OutgoingRequest,
  ProviderErrorType,
  ProviderPlugin,
  UsageCount,
} from '../plugin-system/provider-plugin';
import { ProviderRegistry } from '../plugin-system/provider-registry';
import { UsageRecorder } from '../usage/usage-recorder';
import { KeyPool, type PooledKey, type Unusable } from './key-pool';
import { DROPPED_REQUEST_HEADERS, DROPPED_RESPONSE_HEADERS, UpstreamPools } from './upstream';

/** Errors after which the request is tried again on the next key. */
const FAILOVER_ON = new Set<ProviderErrorType>([
  'invalid_key',
  'rate_limited',
  'out_of_credit',
  'provider_error',
  'timeout',
]);
const MAX_ERROR_BODY = 256 * 1024;
const USAGE_OBJECT = /"usage"\s*:\s*\{/;
const MAX_USAGE_BODY = 8 * 1024 * 1024;

/** One client request on its way through the gateway. */
interface Call {
  req: IncomingMessage;
  res: ServerResponse;
  principal: GatewayPrincipal;
  plugin: ProviderPlugin;
  provider: string;
  /** The provider's origin, from its base URL, read once per request. */
  origin: string;
  /** Path (and query) on the provider, relative to its origin. */
  upstreamPath: string;
  /** The endpoint as the usage record names it (`/chat/completions`). */
  endpoint: string;
  method: string;
  /** As received; undefined when the parsed JSON is to be sent (see `prepare`). */
  body: Buffer | undefined;
  json: Record<string, unknown> | undefined;
  model: string | null;
  stream: boolean;
  /** OpenAI-style usage event that Keyward asked for and the client did not. */
  dropEvent?: (data: string) => boolean;
}

class GatewayProblem extends Error {
  constructor(
    readonly status: number,
    readonly slug: string,
    readonly title: string,
    readonly detail: string,
    readonly headers: Record<string, string> = {},
  ) {
    super(title);
  }
}

/**
 * The gateway: `/proxy/:provider/*` (the provider's own API, for its official SDK) and the
 * OpenAI-compatible `/v1/chat/completions` and `/v1/models`. It runs as Express middleware ahead
 * of Nest's router — built from the app's injected services, but without the framework's
 * per-request guards, pipes and interceptors, which the hot path does not need (ARCHITECTURE.md:
 * "Gateway hot path"). No database round trip on the way: tokens and keys come from caches,
 * usage goes to a batch writer.
 */
@Injectable()
export class GatewayService implements OnModuleDestroy {
  private readonly logger = new Logger('Gateway');
  private readonly upstream = new UpstreamPools();

  constructor(
    private readonly tokens: AccessTokensService,
    @Inject(RATE_LIMITER) private readonly limiter: RateLimiter,
    private readonly registry: ProviderRegistry,
    private readonly pricing: PricingService,
    private readonly pool: KeyPool,
    private readonly recorder: UsageRecorder,
    @Inject(KEYWARD_CONFIG) private readonly config: KeywardConfig,
  ) {}

  async onModuleDestroy(): Promise<void> {
    await this.upstream.close();
  }

  /** Resolves the client address the way Express does with `trust proxy` (set by app.setup.ts). */
  clientAddress: (req: IncomingMessage) => string = (req) => req.socket.remoteAddress ?? '';

  /**
   * Takes the request when it is gateway traffic (true), else leaves it to Express (false).
   * app.setup.ts puts this in front of Express on the HTTP server's `request` event: the gateway
   * pays for neither Express's router nor any middleware.
   */
  handleRequest(req: IncomingMessage, res: ServerResponse): boolean {
    const url = req.url ?? '';
    let work: (() => Promise<void>) | undefined;
    if (url.startsWith('/proxy/')) work = () => this.proxyCall(req, res);
    else if (url === '/v1/chat/completions' || url.startsWith('/v1/chat/completions?')) {
      work = () => this.compatibleCall(req, res);
    } else if (url === '/v1/models' || url.startsWith('/v1/models?')) work = () => this.models(req, res);
    if (!work) return false;
    void this.handle(req, res, work);
    return true;
  }

  private async handle(req: IncomingMessage, res: ServerResponse, work: () => Promise<void>): Promise<void> {
    try {
      await work();
    } catch (error) {
      if (error instanceof GatewayProblem) return this.sendProblem(req, res, error);
      this.logger.error(`Gateway error on ${req.method} ${(req.url ?? '').split('?')[0]}: ${(error as Error).message}`);
      if (!res.headersSent) {
        this.sendProblem(
          req,
          res,
          new GatewayProblem(502, 'bad-gateway', 'Bad gateway', 'The call could not be completed.'),
        );
      } else {
        res.destroy();
      }
    }
  }

  // ---- entry points -----------------------------------------------------------------------------

  private async proxyCall(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const match = /^\/proxy\/([a-z][a-z0-9-]*)(\/[^?]*)?(\?.*)?$/.exec(req.url ?? '');
    if (!match) throw new GatewayProblem(404, 'not-found', 'Not found', 'Use /proxy/<provider>/<path>.');
    const [, provider, path = '/', query = ''] = match;
    const principal = await this.admit(req);
    const plugin = this.registry.get(provider);
    if (!plugin) {
      throw new GatewayProblem(404, 'unknown-provider', 'Unknown provider', `No provider "${provider}" is loaded.`);
    }
    this.allowScope(principal, provider);
    const base = new URL(plugin.config.baseUrl);
    const basePath = base.pathname.replace(/\/+$/, '');
    const endpoint = path.startsWith(basePath + '/') ? path.slice(basePath.length) : undefined;
    if (!endpoint || !plugin.config.endpoints.some((e) => endpoint === e || endpoint.startsWith(e + '/'))) {
      throw new GatewayProblem(
        404,
        'unknown-endpoint',
        'Not an endpoint Keyward forwards',
        `${plugin.config.name} endpoints are ${plugin.config.endpoints.map((e) => basePath + e).join(', ')}.`,
      );
    }
    const { body, json } = await this.readBody(req);
    const model = typeof json?.model === 'string' ? json.model : null;
    if (model) this.allowScope(principal, provider, model);
    await this.forward(
      this.prepare({
        req,
        res,
        principal,
        plugin,
        provider,
        origin: base.origin,
        upstreamPath: path + query,
        endpoint,
        method: req.method ?? 'GET',
        body,
        json,
        model,
        stream: json?.stream === true,
      }),
    );
  }

  private async compatibleCall(req: IncomingMessage, res: ServerResponse): Promise<void> {
    if (req.method !== 'POST') throw new GatewayProblem(405, 'method-not-allowed', 'Method not allowed', 'Use POST.');
    const principal = await this.admit(req);
    const { json } = await this.readBody(req);
    if (!json || typeof json.model !== 'string' || json.model === '') {
      throw new GatewayProblem(
        400,
        'validation-failed',
        'Invalid request',
        '"model" is required, e.g. "groq/llama-3.1-8b-instant".',
      );
    }
    const route = this.route(json.model);
    if (!route) {
      throw new GatewayProblem(
        404,
        'unknown-model',
        'Unknown model',
        `No OpenAI-compatible provider serves "${json.model}". Name it as <provider>/<model>, e.g. openai/gpt-5.`,
      );
    }
    this.allowScope(principal, route.provider, route.model);
    const plugin = this.registry.get(route.provider)!;
    const base = new URL(plugin.config.baseUrl);
    await this.forward(
      this.prepare({
        req,
        res,
        principal,
        plugin,
        provider: route.provider,
        origin: base.origin,
        upstreamPath: `${base.pathname.replace(/\/+$/, '')}/chat/completions`,
        endpoint: '/chat/completions',
        method: 'POST',
        // The model loses its provider prefix: the JSON is sent again, serialised once in prepare.
        body: undefined,
        json: { ...json, model: route.model },
        model: route.model,
        stream: json.stream === true,
      }),
    );
  }

  private async models(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const principal = await this.admit(req);
    const data = [];
    for (const { manifest, plugin } of this.registry.loaded()) {
      if (!this.isCompatible(plugin) || !this.tokens.allows(principal, manifest.id)) continue;
      for (const model of plugin.config.models) {
        if (this.tokens.allows(principal, manifest.id, model)) {
          data.push({ id: `${manifest.id}/${model}`, object: 'model', created: 0, owned_by: manifest.id });
        }
      }
    }
    const json = JSON.stringify({ object: 'list', data });
    res.writeHead(200, {
      'content-type': 'application/json; charset=utf-8',
      'content-length': Buffer.byteLength(json),
    });
    res.end(json);
  }

  // ---- admission ---------------------------------------------------------------------------------

  private async admit(req: IncomingMessage): Promise<GatewayPrincipal> {
    const raw = this.credentialOf(req);
    const principal = raw ? await this.tokens.resolve(raw) : null;
    if (!principal) {
      throw new GatewayProblem(
        401,
        'unauthenticated',
        'Access token required',
        raw
          ? 'The access token is unknown, revoked or expired.'
          : 'Send a Keyward access token (kw_…) as "Authorization: Bearer" or "x-api-key".',
        { 'www-authenticate': 'Bearer realm="keyward"' },
      );
    }
    const ip = this.clientAddress(req);
    if (!this.tokens.ipAllowed(principal, ip)) {
      throw new GatewayProblem(
        403,
        'ip-not-allowed',
        'Address not allowed',
        'This access token is not allowed from this address.',
      );
    }
    if (principal.rateLimitPerMinute) {
      const taken = await this.limiter.take(`token:${principal.id}`, principal.rateLimitPerMinute);
      if (!taken.allowed) {
        throw new GatewayProblem(
          429,
          'rate-limited',
          'Too many requests',
          `This access token may make ${principal.rateLimitPerMinute} requests a minute; try again in ${taken.retryAfterSeconds} s.`,
          { 'retry-after': String(taken.retryAfterSeconds) },
        );
      }
    }
    this.tokens.touch(principal.id);
    return principal;
  }

  private credentialOf(req: IncomingMessage): string | undefined {
    const authorization = req.headers.authorization;
    if (authorization && /^bearer\s+kw_/i.test(authorization)) return authorization.replace(/^bearer\s+/i, '').trim();
    const apiKey = req.headers['x-api-key'];
    if (typeof apiKey === 'string' && apiKey.startsWith('kw_')) return apiKey.trim();
    return undefined;
  }

  /** The token's provider and model lists, checked in one place for every entry point. */
  private allowScope(principal: GatewayPrincipal, provider: string, model?: string): void {
    if (!this.tokens.allows(principal, provider)) {
      throw new GatewayProblem(
        403,
        'provider-not-allowed',
        'Provider not allowed',
        `This access token may not use ${provider}.`,
      );
    }
    if (model !== undefined && !this.tokens.allows(principal, provider, model)) {
      throw new GatewayProblem(
        403,
        'model-not-allowed',
        'Model not allowed',
        `This access token may not use ${model}.`,
      );
    }
  }

  private async readBody(
    req: IncomingMessage,
  ): Promise<{ body: Buffer | undefined; json: Record<string, unknown> | undefined }> {
    if (req.method === 'GET' || req.method === 'HEAD') return { body: undefined, json: undefined };
    const body = await this.collect(req, this.bodyLimitBytes());
    const type = req.headers['content-type'] ?? '';
    if (body.length === 0 || !/json/i.test(type)) return { body, json: undefined };
    try {
      const parsed = JSON.parse(body.toString('utf8')) as unknown;
      return {
        body,
        json:
          parsed && typeof parsed === 'object' && !Array.isArray(parsed)
            ? (parsed as Record<string, unknown>)
            : undefined,
      };
    } catch {
      throw new GatewayProblem(400, 'invalid-json', 'Invalid JSON', 'The request body is not valid JSON.');
    }
  }

  /** The request body, read with plain events (an async iterator costs more per request). */
  private collect(req: IncomingMessage, limit: number): Promise<Buffer> {
    return new Promise((resolve, reject) => {
      const chunks: Buffer[] = [];
      let size = 0;
      let tooLarge = false;
      req.on('data', (chunk: Buffer) => {
        size += chunk.length;
        if (size > limit) tooLarge = true;
        else chunks.push(chunk);
      });
      req.on('end', () => {
        if (tooLarge) {
          reject(
            new GatewayProblem(
              413,
              'payload-too-large',
              'Request body too large',
              `The limit is ${this.config.bodyLimit}.`,
            ),
          );
        } else resolve(chunks.length === 1 ? chunks[0] : Buffer.concat(chunks, size));
      });
      req.on('error', reject);
    });
  }

  private bodyLimitBytes(): number {
    const m = /^(\d+)(b|kb|mb)$/i.exec(this.config.bodyLimit);
    if (!m) return 1024 * 1024;
    const unit = m[2].toLowerCase();
    return Number(m[1]) * (unit === 'mb' ? 1024 * 1024 : unit === 'kb' ? 1024 : 1);
  }

  /** `provider/model`, or a model one OpenAI-compatible plugin lists. */
  private route(model: string): { provider: string; model: string } | undefined {
    const slash = model.indexOf('/');
    if (slash > 0) {
      const provider = model.slice(0, slash);
      const plugin = this.registry.get(provider);
      if (plugin && this.isCompatible(plugin)) return { provider, model: model.slice(slash + 1) };
    }
    for (const { manifest, plugin } of this.registry.loaded()) {
      if (this.isCompatible(plugin) && plugin.config.models.includes(model)) return { provider: manifest.id, model };
    }
    return undefined;
  }

  private isCompatible(plugin: ProviderPlugin): boolean {
    return plugin.config.endpoints.includes('/chat/completions');
  }

  /** Asks for streamed usage where the provider needs asking (OpenAI's include_usage). */
  /**
   * The body to send: as received, unless it has to change — a routed model name, or stream
   * usage the provider reports only when asked (OpenAI's include_usage) — then serialised once.
   */
  private prepare(call: Call): Call {
    const { json } = call;
    if (call.stream && json && call.plugin.prepareStreamingRequest) {
      const prepared = call.plugin.prepareStreamingRequest(json);
      if (!prepared.clientRequestedUsage) {
        return { ...call, body: Buffer.from(JSON.stringify(prepared.body)), dropEvent: prepared.isAddedUsageEvent };
      }
    }
    return call.body === undefined && json ? { ...call, body: Buffer.from(JSON.stringify(json)) } : call;
  }

  // ---- forwarding with failover --------------------------------------------------------------------

  private async forward(call: Call): Promise<void> {
    const now = Date.now();
    const all = await this.pool.keys(call.provider);
    const reasons = new Map<Unusable, number>();
    const usable: PooledKey[] = [];
    for (const key of all) {
      const why = this.pool.unusable(key, now);
      if (why) reasons.set(why, (reasons.get(why) ?? 0) + 1);
      else usable.push(key);
    }
    if (usable.length === 0) return this.noKey(call, all.length, reasons);

    const order = this.pool.order(usable);
    const attempts = this.config.gateway.failover ? Math.min(this.config.gateway.maxAttempts, order.length) : 1;
    let last: { status: number; headers: Record<string, string | string[] | undefined>; body: Buffer } | undefined;
    let lastType: ProviderErrorType | undefined;
    for (let attempt = 1; attempt <= attempts; attempt++) {
      const key = order[attempt - 1];
      // A key may have run out while this request waited for another attempt.
      if (attempt > 1 && this.pool.unusable(key, Date.now())) continue;
      const outcome = await this.attempt(call, key, attempt, attempt === attempts);
      if (outcome.done) return;
      last = outcome.failure;
      lastType = outcome.type;
      if (outcome.type === 'provider_error' || outcome.type === 'timeout') {
        // Backoff with jitter before the next key: a provider in trouble gets a moment.
        await sleep(Math.min(1000, 25 * 2 ** (attempt - 1)) * (0.5 + Math.random()));
      }
    }
    // Every attempt failed with an error worth failing over for: the last provider answer is
    // passed through where there is one, else Keyward says why.
    if (last) return this.passThrough(call.res, last, attempts);
    throw new GatewayProblem(
      lastType === 'timeout' ? 504 : 502,
      lastType === 'timeout' ? 'upstream-timeout' : 'upstream-failed',
      'The provider did not answer',
      `${call.plugin.config.name} did not answer on ${attempts} key(s).`,
    );
  }

  /**
   * One try on one key. Answers `done` when the client has its answer (success, or an error
   * that another key would not change), else the failure to remember for the next try.
   */
  private async attempt(
    call: Call,
    key: PooledKey,
    attempt: number,
    isLast: boolean,
  ): Promise<
    | { done: true }
    | {
        done: false;
        type: ProviderErrorType;
        failure?: { status: number; headers: Record<string, string | string[] | undefined>; body: Buffer };
      }
  > {
    const started = performance.now();
    const outgoing: OutgoingRequest = {
      method: call.method,
      url: new URL(call.upstreamPath, call.origin),
      headers: this.upstreamHeaders(call),
    };
    call.plugin.authorize(outgoing, this.pool.secretOf(key), key.organizationId);
    key.inFlight++;
    let released = false;
    const release = () => {
      if (!released) {
        released = true;
        key.inFlight--;
      }
    };
    const abort = new AbortController();
    // Only a client that leaves before its answer is complete cancels the upstream call; the
    // normal close after a finished answer must not (it would build an AbortError every time).
    const onClose = () => {
      if (!call.res.writableFinished) abort.abort();
    };
    call.res.once('close', onClose);

    let response: Dispatcher.ResponseData;
    try {
      response = await this.upstream.for(call.origin).request({
        method: call.method as Dispatcher.HttpMethod,
        path: outgoing.url.pathname + outgoing.url.search,
        headers: outgoing.headers,
        body: call.body,
        headersTimeout: this.config.gateway.upstreamTimeoutMs,
        bodyTimeout: 5 * 60_000,
        signal: abort.signal,
      });
    } catch (error) {
      call.res.off('close', onClose);
      if (abort.signal.aborted) {
        // The client left: nothing is wrong with the key, and nobody is waiting for another try.
        this.record(
          call,
          key,
          attempt,
          started,
          { success: false, errorType: 'client_aborted', status: null },
          release,
        );
        return { done: true };
      }
      const type: ProviderErrorType = error instanceof undiciErrors.HeadersTimeoutError ? 'timeout' : 'provider_error';
      this.record(call, key, attempt, started, { success: false, errorType: type, status: null }, release);
      await this.pool.markFailure(key, type, undefined, (error as Error).message);
      return { done: false, type };
    }

    if (response.statusCode >= 400) {
      call.res.off('close', onClose);
      const body = await this.readLimited(response.body, MAX_ERROR_BODY);
      const classified = this.classify(call.plugin, response.statusCode, response.headers, body);
      this.record(
        call,
        key,
        attempt,
        started,
        { success: false, errorType: classified.type, status: response.statusCode },
        release,
      );
      const failure = { status: response.statusCode, headers: response.headers, body };
      if (this.config.gateway.failover && FAILOVER_ON.has(classified.type)) {
        await this.pool.markFailure(
          key,
          classified.type,
          classified.retryAfterMs,
          classified.message ?? `HTTP ${response.statusCode}`,
        );
        if (!isLast) return { done: false, type: classified.type, failure };
      } else if (
        classified.type === 'invalid_key' ||
        classified.type === 'rate_limited' ||
        classified.type === 'out_of_credit'
      ) {
        await this.pool.markFailure(
          key,
          classified.type,
          classified.retryAfterMs,
          classified.message ?? `HTTP ${response.statusCode}`,
        );
      }
      this.passThrough(call.res, failure, attempt);
      return { done: true };
    }

    try {
      await this.relay(call, key, attempt, started, response, release);
    } finally {
      call.res.off('close', onClose);
    }
    return { done: true };
  }

  /** Streams the provider's answer to the client chunk by chunk, counting usage as it passes. */
  private async relay(
    call: Call,
    key: PooledKey,
    attempt: number,
    started: number,
    response: Dispatcher.ResponseData,
    release: () => void,
  ) {
    const { res } = call;
    const contentType = String(response.headers['content-type'] ?? '');
    const isSse = contentType.includes('text/event-stream');
    const filter = isSse ? call.dropEvent : undefined;
    const headers: Record<string, string | string[]> = { 'x-keyward-attempts': String(attempt) };
    for (const name in response.headers) {
      const value = response.headers[name];
      if (value === undefined || DROPPED_RESPONSE_HEADERS.has(name)) continue;
      if (name === 'content-length' && filter) continue;
      headers[name] = value;
    }
    res.writeHead(response.statusCode, headers);

    const tap = isSse ? call.plugin.createStreamTap() : undefined;
    const collected: Buffer[] = [];
    let collectedBytes = 0;
    let pendingSse = '';
    const body = response.body;
    // Plain stream events rather than `for await`: the iterator's promise per chunk shows in
    // profiles of the gateway under load.
    const aborted = await new Promise<boolean>((resolve) => {
      body.on('data', (chunk: Buffer) => {
        if (tap) tap.push(chunk);
        else if (collectedBytes + chunk.length <= MAX_USAGE_BODY) {
          collected.push(chunk);
          collectedBytes += chunk.length;
        }
        let out: Buffer | string = chunk;
        if (filter) {
          // Only whole events can be judged; the rest waits for the next chunk.
          pendingSse += chunk.toString('utf8');
          const cut = pendingSse.lastIndexOf('\n\n');
          if (cut < 0) return;
          const complete = pendingSse.slice(0, cut + 2);
          pendingSse = pendingSse.slice(cut + 2);
          out = this.withoutEvents(complete, filter);
          if (out.length === 0) return;
        }
        if (!res.write(out)) {
          body.pause();
          res.once('drain', () => body.resume());
        }
      });
      body.once('end', () => {
        if (pendingSse) res.write(this.withoutEvents(pendingSse, filter!));
        res.end();
        resolve(false);
      });
      body.once('error', (error) => {
        if (!res.destroyed) res.destroy(error);
        resolve(true);
      });
    });

    let usage: UsageCount | undefined;
    if (tap) usage = tap.result();
    else if (collectedBytes > 0 && contentType.includes('json')) {
      try {
        usage = call.plugin.usageFrom(JSON.parse(Buffer.concat(collected).toString('utf8')));
      } catch {
        usage = undefined;
      }
    }
    this.record(
      call,
      key,
      attempt,
      started,
      { success: !aborted, errorType: aborted ? 'client_aborted' : null, status: response.statusCode, usage },
      release,
    );
  }

  private withoutEvents(block: string, drop: (data: string) => boolean): string {
    // The only event ever dropped carries a usage object; most blocks have none and pass as they are.
    if (!USAGE_OBJECT.test(block)) return block;
    return block
      .split(/\n\n/)
      .filter((event) => {
        if (event === '') return false;
        const data = event
          .split('\n')
          .filter((line) => line.startsWith('data:'))
          .map((line) => line.slice(5).trimStart())
          .join('\n');
        return !(data && drop(data));
      })
      .map((event) => event + '\n\n')
      .join('');
  }

  private upstreamHeaders(call: Call): Record<string, string> {
    const headers: Record<string, string> = {};
    for (const [name, value] of Object.entries(call.req.headers)) {
      if (value === undefined || DROPPED_REQUEST_HEADERS.has(name)) continue;
      headers[name] = Array.isArray(value) ? value.join(', ') : value;
    }
    if (call.body) headers['content-length'] = String(call.body.length);
    return headers;
  }

  private classify(
    plugin: ProviderPlugin,
    status: number,
    headers: Record<string, unknown>,
    body: Buffer,
  ): ClassifiedError {
    const text = body.toString('utf8');
    let parsed: unknown = text;
    try {
      parsed = JSON.parse(text);
    } catch {
      // Not JSON: classified from the raw text.
    }
    return plugin.classifyError(status, headers as Record<string, string>, parsed);
  }

  private passThrough(
    res: ServerResponse,
    failure: { status: number; headers: Record<string, string | string[] | undefined>; body: Buffer },
    attempts: number,
  ): void {
    if (res.headersSent) return void res.end();
    const headers: Record<string, string | string[]> = {
      'x-keyward-attempts': String(attempts),
      'content-length': String(failure.body.length),
    };
    for (const [name, value] of Object.entries(failure.headers)) {
      if (value === undefined || DROPPED_RESPONSE_HEADERS.has(name) || name === 'content-length') continue;
      headers[name] = value;
    }
    res.writeHead(failure.status, headers);
    res.end(failure.body);
  }

  private noKey(call: Call, total: number, reasons: Map<Unusable, number>): void {
    const overLimit = reasons.get('over-limit') ?? 0;
    this.recorder.record({
      timestamp: new Date(),
      keyId: null,
      provider: call.provider,
      accessTokenId: call.principal.id,
      endpoint: call.endpoint,
      model: call.model,
      inputTokens: 0,
      outputTokens: 0,
      cachedInputTokens: 0,
      totalTokens: 0,
      cost: 0,
      unpriced: false,
      latencyMs: 0,
      success: false,
      errorType:
        overLimit > 0 && overLimit === total - (reasons.get('unhealthy') ?? 0) - (reasons.get('expired') ?? 0)
          ? 'usage_exceeded'
          : 'no_key',
      status: null,
      attempt: 0,
      stream: call.stream,
      source: 'gateway',
    });
    if (
      total > 0 &&
      overLimit > 0 &&
      [...reasons.keys()].every((r) => r === 'over-limit' || r === 'unhealthy' || r === 'expired')
    ) {
      throw new GatewayProblem(
        429,
        'usage-exceeded',
        'Usage limit reached',
        `Every usable ${call.plugin.config.name} key has reached its usage limit; limits start over at their reset time.`,
      );
    }
    const cooling = reasons.get('cooling-down') ?? 0;
    const detail =
      total === 0
        ? `No active ${call.plugin.config.name} key is stored.`
        : `None of the ${total} ${call.plugin.config.name} key(s) can serve now: ${[...reasons.entries()].map(([r, n]) => `${n} ${r}`).join(', ')}.`;
    throw new GatewayProblem(
      503,
      'no-healthy-key',
      'No usable provider key',
      detail,
      cooling > 0 ? { 'retry-after': '5' } : {},
    );
  }

  private record(
    call: Call,
    key: PooledKey,
    attempt: number,
    started: number,
    outcome: { success: boolean; errorType: string | null; status: number | null; usage?: UsageCount },
    /** Ends the key's in-flight reservation once the record counts instead: no gap between. */
    release: () => void,
  ): void {
    const usage = outcome.usage;
    const model = usage?.model ?? call.model;
    const inputTokens = usage?.inputTokens ?? 0;
    const outputTokens = usage?.outputTokens ?? 0;
    const base = {
      timestamp: new Date(),
      keyId: key.id,
      provider: call.provider,
      accessTokenId: call.principal.id,
      endpoint: call.endpoint,
      model,
      inputTokens,
      outputTokens,
      cachedInputTokens: usage?.cachedInputTokens ?? 0,
      totalTokens: usage?.totalTokens ?? inputTokens + outputTokens,
      latencyMs: Math.round(performance.now() - started),
      success: outcome.success,
      errorType: outcome.errorType,
      status: outcome.status,
      attempt,
      stream: call.stream,
      source: 'gateway' as const,
    };
    if (!usage) {
      this.recorder.record({ ...base, cost: 0, unpriced: false });
      release();
      return;
    }
    // Prices come from a cached table; the record is handed over as soon as they are known.
    void this.pricing
      .cost(call.provider, model ?? '', usage)
      .then(
        (c) => this.recorder.record({ ...base, cost: c.cost, unpriced: c.unpriced }),
        () => this.recorder.record({ ...base, cost: 0, unpriced: true }),
      )
      .finally(release);
  }

  private async readLimited(body: Dispatcher.ResponseData['body'], limit: number): Promise<Buffer> {
    const chunks: Buffer[] = [];
    let size = 0;
    for await (const chunk of body as AsyncIterable<Buffer>) {
      if (size < limit) chunks.push(chunk);
      size += chunk.length;
    }
    return Buffer.concat(chunks).subarray(0, limit);
  }

  private sendProblem(req: IncomingMessage, res: ServerResponse, problem: GatewayProblem): void {
    if (res.headersSent) return void res.end();
    const body = JSON.stringify({
      type: problemType(problem.slug),
      title: problem.title,
      status: problem.status,
      detail: problem.detail,
      instance: (req.url ?? '').split('?')[0],
    });
    res.writeHead(problem.status, {
      ...problem.headers,
      'content-type': 'application/problem+json; charset=utf-8',
      'content-length': Buffer.byteLength(body),
      'cache-control': 'no-store',
    });
    res.end(body);
    // An unread request body would stall a keep-alive connection: drain what is left.
    if (!req.complete) req.resume();
  }
}
