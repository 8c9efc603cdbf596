import { Inject, Injectable, Logger, Optional } from '@nestjs/common';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { GatewayPrincipal } from '../access-tokens/access-tokens.service';
import { KEYWARD_CONFIG } from '../config/config.constants';
import { DatabaseUnavailableError } from '../database/database-health';
import type { KeywardConfig } from '../config/config';
import type { ProviderEndpoint, ProviderPlugin } from '../plugin-system/provider-plugin';
import { MetricsService } from '../metrics/metrics.service';
import { ProviderRegistry } from '../plugin-system/provider-registry';
import { Admission } from './admission';
import { Failover } from './failover';
import type { Call } from './gateway-call';
import { GatewayProblem, sendProblem } from './gateway-problem';
import { RefusalLog } from './refusal-log';
import { readRequestBody, type BodyLimits } from './request-body';
import { GatewayScope } from './scope';
import { UsageRecording } from './usage-record';

/** What is known of a request so far, for the audit and usage of a refusal. */
interface Seen {
  ip: string;
  principal?: GatewayPrincipal;
  provider?: string;
  endpoint?: string;
  model?: string | null;
}

const PROXY_PATH = /^\/proxy\/([a-z][a-z0-9-]*)(\/[^?]*)?(\?.*)?$/;
/** The OpenAI-compatible entry point: these calls are routed to a provider by their `model`. */
const COMPATIBLE = new Map<string, string[]>([
  ['/v1/chat/completions', ['chat', 'completions']],
  ['/v1/completions', ['completions']],
  ['/v1/responses', ['responses']],
  ['/v1/embeddings', ['embeddings']],
]);

/**
 * The gateway: `/proxy/:provider/*` (each provider's own API, for its official SDK) and the
 * OpenAI-compatible `/v1/*`. It runs ahead of Express on the HTTP server's request event —
 * built from the app's injected services, without the framework's per-request guards, pipes
 * and interceptors. No database round trip on the way: tokens and keys come from caches, usage
 * goes to a batch writer.
 *
 * The hot path, top to bottom: admission (token, address) → scope (path, method, grants,
 * model) → body → rate → key choice and failover → relay → usage record.
 */
@Injectable()
export class GatewayService {
  private readonly logger = new Logger('Gateway');
  private readonly limits: BodyLimits;

  constructor(
    private readonly admission: Admission,
    private readonly scope: GatewayScope,
    private readonly failover: Failover,
    private readonly usage: UsageRecording,
    private readonly refusals: RefusalLog,
    private readonly registry: ProviderRegistry,
    @Inject(KEYWARD_CONFIG) config: KeywardConfig,
    @Optional() private readonly metrics?: MetricsService,
  ) {
    this.limits = { bufferBytes: config.gateway.bodyLimitBytes, streamBytes: config.gateway.uploadLimitBytes };
  }

  /** Resolves the client address the way Express does with `trust proxy` (set by app.setup.ts). */
  clientAddress: (req: IncomingMessage) => string = (req) => req.socket.remoteAddress ?? '';

  /**
   * Takes the request when it is gateway traffic (true), else leaves it to Express (false).
   * app.setup.ts puts this in front of Express on the HTTP server's `request` event.
   */
  handleRequest(req: IncomingMessage, res: ServerResponse): boolean {
    const url = req.url ?? '';
    let work: ((seen: Seen) => Promise<void>) | undefined;
    if (url.startsWith('/proxy/')) work = (seen) => this.proxyCall(req, res, seen);
    else if (url.startsWith('/v1/')) {
      const path = url.split('?', 1)[0];
      const relative = COMPATIBLE.get(path);
      if (relative) work = (seen) => this.compatibleCall(req, res, relative, seen);
      else if (path === '/v1/models') work = (seen) => this.models(req, res, seen);
    }
    if (!work) return false;
    void this.handle(req, res, work);
    return true;
  }

  private async handle(req: IncomingMessage, res: ServerResponse, work: (seen: Seen) => Promise<void>): Promise<void> {
    const seen: Seen = { ip: this.clientAddress(req) };
    const started = performance.now();
    try {
      await work(seen);
      this.observe(seen, res, started, undefined);
    } catch (error) {
      this.observe(seen, res, started, error instanceof GatewayProblem ? (error.refusal ?? error.slug) : 'error');
      if (error instanceof GatewayProblem) return this.refuse(req, res, error, seen);
      if (error instanceof DatabaseUnavailableError) {
        // The database is down and nothing cached can answer: a retryable 503, not a 502.
        return this.refuse(
          req,
          res,
          new GatewayProblem(
            503,
            'database-unavailable',
            'Temporarily unavailable',
            'Keyward cannot reach its database and has nothing cached for this request; try again shortly.',
            { 'retry-after': String(error.retryAfterSeconds) },
            'database-unavailable',
          ),
          seen,
        );
      }
      this.logger.error(
        `Gateway error on ${req.method} ${(req.url ?? '').split('?')[0].slice(0, 200)}: ${(error as Error).message}`,
      );
      if (res.headersSent) return void res.destroy();
      sendProblem(req, res, new GatewayProblem(502, 'bad-gateway', 'Bad gateway', 'The call could not be completed.'));
    }
  }

  /** One sample per call for /metrics: the provider and how the call ended. */
  private observe(seen: Seen, res: ServerResponse, started: number, refusal: string | undefined): void {
    if (!this.metrics) return;
    let outcome = refusal;
    if (outcome === undefined) {
      if (!res.writableEnded) outcome = 'client_aborted';
      else if (res.statusCode < 400) outcome = 'success';
      else outcome = res.statusCode >= 500 ? 'provider_error' : 'provider_refused';
    }
    if (refusal === 'rate-limited') this.metrics.countLimitHit('rate');
    else if (refusal === 'budget-exceeded') this.metrics.countLimitHit('token');
    this.metrics.observeGatewayRequest(seen.provider ?? 'none', outcome, (performance.now() - started) / 1000);
  }

  /** Keyward's own answer: refusals are audited (folded) and, once a provider is known, counted. */
  private refuse(req: IncomingMessage, res: ServerResponse, problem: GatewayProblem, seen: Seen): void {
    if (problem.refusal) {
      this.refusals.note(
        problem.refusal,
        problem.status,
        { id: seen.principal?.id ?? null, hint: seen.principal ? null : this.admission.hintOf(req) },
        seen.ip,
      );
      if (seen.provider && (problem.status === 429 || problem.status === 503)) {
        this.usage.refused({
          provider: seen.provider,
          accessTokenId: seen.principal?.id ?? null,
          endpoint: seen.endpoint ?? '',
          model: seen.model ?? null,
          stream: false,
          status: problem.status,
          errorType: problem.refusal.replace(/-/g, '_'),
        });
      }
    }
    sendProblem(req, res, problem);
  }

  // ---- entry points -----------------------------------------------------------------------------

  private async proxyCall(req: IncomingMessage, res: ServerResponse, seen: Seen): Promise<void> {
    const match = PROXY_PATH.exec(req.url ?? '');
    if (!match)
      throw new GatewayProblem(404, 'not-found', 'Not found', 'Use /proxy/<provider>/<path>.', {}, 'invalid-path');
    const [, provider, path = '/', query = ''] = match;
    const method = req.method ?? 'GET';
    const plugin = this.scope.plugin(provider);
    const principal = (seen.principal = await this.admission.admit(req, seen.ip));
    const target = this.scope.resolve(plugin, method, path, query);
    seen.provider = provider;
    seen.endpoint = target.endpoint.path;
    this.scope.grant(principal, provider, target.endpoint);
    const body = await readRequestBody(req, target.endpoint, this.limits, principal.models !== null);
    seen.model = body.model;
    this.scope.model(principal, target.endpoint, body.model);
    const rated = this.admission.rate(principal);
    if (rated) await rated;
    this.admission.touch(principal);
    await this.failover.forward(
      prepare({ req, res, principal, plugin, provider, origin: target.origin, target, method, ...body }),
    );
  }

  private async compatibleCall(
    req: IncomingMessage,
    res: ServerResponse,
    relative: string[],
    seen: Seen,
  ): Promise<void> {
    if (req.method !== 'POST') {
      throw new GatewayProblem(
        405,
        'method-not-allowed',
        'Method not allowed',
        'Use POST.',
        { allow: 'POST' },
        'method-not-allowed',
      );
    }
    const principal = (seen.principal = await this.admission.admit(req, seen.ip));
    const asked: ProviderEndpoint = { method: 'POST', path: '/' + relative.join('/'), group: 'chat', model: 'json' };
    const body = await readRequestBody(req, asked, this.limits, true);
    if (!body.json || !body.model) {
      throw new GatewayProblem(
        400,
        'validation-failed',
        'Invalid request',
        'A JSON body with "model" is required, e.g. "groq/llama-3.1-8b-instant".',
        {},
        'invalid-request',
      );
    }
    const route = this.route(body.model);
    if (!route) {
      throw new GatewayProblem(
        404,
        'unknown-model',
        'Unknown model',
        `No OpenAI-compatible provider serves "${body.model.slice(0, 100)}". Name it as <provider>/<model>, e.g. openai/gpt-5.`,
        {},
        'unknown-model',
      );
    }
    const target = this.scope.compatible(route.plugin, 'POST', relative);
    if (!target) {
      throw new GatewayProblem(
        404,
        'unknown-endpoint',
        'Not an endpoint of this provider',
        `${route.plugin.config.name} has no ${asked.path}.`,
        {},
        'unknown-endpoint',
      );
    }
    seen.provider = route.provider;
    seen.endpoint = target.endpoint.path;
    seen.model = route.model;
    this.scope.grant(principal, route.provider, target.endpoint);
    this.scope.model(principal, target.endpoint, route.model);
    const rated = this.admission.rate(principal);
    if (rated) await rated;
    this.admission.touch(principal);
    const renamed = route.model !== body.model;
    await this.failover.forward(
      prepare({
        req,
        res,
        principal,
        plugin: route.plugin,
        provider: route.provider,
        origin: target.origin,
        target,
        method: 'POST',
        ...body,
        // A model that lost its provider prefix is sent as rewritten JSON, serialised once in prepare.
        body: renamed ? undefined : body.body,
        json: renamed ? { ...body.json, model: route.model } : body.json,
        model: route.model,
      }),
    );
  }

  private async models(req: IncomingMessage, res: ServerResponse, seen: Seen): Promise<void> {
    const principal = (seen.principal = await this.admission.admit(req, seen.ip));
    const data = [];
    for (const { manifest, plugin } of this.registry.loaded()) {
      if (!this.isCompatible(plugin)) continue;
      if (principal.providers && !principal.providers.includes(manifest.id)) continue;
      for (const model of plugin.config.models) {
        if (this.admission.allowsModel(principal, manifest.id, model)) {
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

  // ---- routing by model ---------------------------------------------------------------------------

  /**
   * The provider for a model on `/v1`: the plugin that lists the whole name (Groq lists
   * `openai/gpt-oss-120b`), else `<provider>/<model>`, else a plugin listing the bare model.
   */
  private route(model: string): { provider: string; plugin: ProviderPlugin; model: string } | undefined {
    const loaded = this.registry.loaded().filter(({ plugin }) => this.isCompatible(plugin));
    for (const { manifest, plugin } of loaded) {
      if (plugin.config.models.includes(model)) return { provider: manifest.id, plugin, model };
    }
    const slash = model.indexOf('/');
    if (slash > 0) {
      const provider = model.slice(0, slash);
      const found = loaded.find(({ manifest }) => manifest.id === provider);
      if (found) return { provider, plugin: found.plugin, model: model.slice(slash + 1) };
    }
    return undefined;
  }

  private isCompatible(plugin: ProviderPlugin): boolean {
    return this.scope.compatible(plugin, 'POST', ['chat', 'completions']) !== undefined;
  }
}

/**
 * The body to send: as received, unless it has to change — a routed model name, or stream usage
 * the provider reports only when asked (OpenAI's include_usage) — then serialised once.
 */
function prepare(call: Call): Call {
  const { json } = call;
  if (call.streaming && json && call.plugin.prepareStreamingRequest) {
    const prepared = call.plugin.prepareStreamingRequest(json);
    if (!prepared.clientRequestedUsage) {
      return { ...call, body: Buffer.from(JSON.stringify(prepared.body)), dropEvent: prepared.isAddedUsageEvent };
    }
  }
  return call.body === undefined && json ? { ...call, body: Buffer.from(JSON.stringify(json)) } : call;
}
