/**
 * OpenRouter. Wire facts (OpenAI-compatible API, the
 * provider's own USD cost in every usage, `GET /key` for limits, a key-management API).
 */
import {
  endpointPaths,
  asNumber,
  asRecord,
  asString,
  checkFormat,
  compactWindow,
  errorMessageOf,
  errorTypeOfStatus,
  joinUrl,
  openAiStyleUsage,
  parseRetryAfter,
  ProviderRequestError,
  readHeader,
  readNumberHeader,
  resolveBaseUrl,
  sendRequest,
  setHeader,
  usageEventTap,
  usageKindOf,
  verifyWithRequest,
  zeroUsage,
  fixedUsageTap,
  inputOutputUsage,
  isRecord,
  type ProviderEndpoint,
  type ClassifiedError,
  type HeadersLike,
  type ProviderConfig,
  type ProviderPlugin,
  type ProvisionedKey,
  type ProvisionOptions,
  type RateLimitSnapshot,
  type RetireOptions,
  type UsageCount,
  type VerifyAPIKeyResponse,
} from '../../src/plugin-system/provider-plugin';
import pricingTable from './pricing.json';
import { OPENROUTER_ROUTES } from './routes';

export const PROVIDER_ID = 'openrouter';
export const DEFAULT_BASE_URL = 'https://openrouter.ai/api/v1';

export interface OpenRouterPluginOptions {
  /** Wins over KEYWARD_PROVIDER_OPENROUTER_BASE_URL and the default. */
  baseUrl?: string;
  /** App attribution OpenRouter shows in its rankings; sent unless the client sent its own. */
  referer?: string;
  title?: string;
}

const KEY_PATTERN = /^sk-or-v1-[0-9a-f]{64}$/;
/** The management API's id of a key: the SHA-256 hash of the key, in hex. */
const KEY_HASH = /^[0-9a-f]{64}$/;
const KEY_HASH_FORMAT = 'an OpenRouter key hash (64 hex characters, as GET /keys lists it)';
const KEY_FORMAT = 'an OpenRouter key: "sk-or-v1-" followed by 64 lowercase hexadecimal digits';

export function classifyOpenRouterError(status: number, headers: HeadersLike, body: unknown): ClassifiedError {
  const message = errorMessageOf(body);
  // 401 invalid or disabled key, 402 no credit, 403 moderation (the request, not the key),
  // 408 timeout, 429 rate limit, 502/503 upstream trouble: the status alone says it all.
  let type = errorTypeOfStatus(status);
  if (status === 403 && message !== undefined && /key limit exceeded|credits/i.test(message)) {
    // A key's own credit limit being used up comes as a 403, not a 402.
    type = 'out_of_credit';
  }
  const classified: ClassifiedError = message === undefined ? { type } : { type, message };
  if (type === 'rate_limited' || type === 'provider_error') {
    const retryAfterMs =
      parseRetryAfter(readHeader(headers, 'retry-after')) ?? openRouterRateLimits(headers).requests?.resetMs;
    if (retryAfterMs !== undefined) {
      classified.retryAfterMs = retryAfterMs;
    }
  }
  return classified;
}

/** `X-RateLimit-{Limit,Remaining,Reset}` with the reset as epoch milliseconds. */
export function openRouterRateLimits(headers: HeadersLike, now = Date.now()): RateLimitSnapshot {
  const reset = readNumberHeader(headers, 'x-ratelimit-reset');
  const snapshot: RateLimitSnapshot = {};
  const requests = compactWindow({
    limit: readNumberHeader(headers, 'x-ratelimit-limit'),
    remaining: readNumberHeader(headers, 'x-ratelimit-remaining'),
    resetMs: reset === undefined ? undefined : Math.max(0, reset - now),
  });
  if (requests) {
    snapshot.requests = requests;
  }
  const retryAfterMs = parseRetryAfter(readHeader(headers, 'retry-after'), now);
  if (retryAfterMs !== undefined) {
    snapshot.retryAfterMs = retryAfterMs;
  }
  return snapshot;
}

/**
 * OpenRouter's usage carries its own USD `cost`, which wins over Keyward's price table. Chat,
 * completions and embeddings use the OpenAI shape; the Responses API uses `input_tokens` (its
 * stream ends with a `response.completed` / `.incomplete` / `.failed` event carrying the
 * response). `GET /generation` reads back a past call: 0 tokens.
 */
function usageOf(json: unknown, endpoint?: ProviderEndpoint): UsageCount | undefined {
  const body = asRecord(json);
  const model = asString(body.model);
  if (endpoint && usageKindOf(endpoint) === 'read') {
    return zeroUsage(model);
  }
  const response = isRecord(body.response) ? body.response : undefined;
  return (
    openAiStyleUsage(body.usage, model) ??
    inputOutputUsage(body.usage, model) ??
    (response ? inputOutputUsage(response.usage, asString(response.model)) : undefined)
  );
}

export function createPlugin(options: OpenRouterPluginOptions = {}): ProviderPlugin {
  const config: ProviderConfig = {
    id: PROVIDER_ID,
    name: 'OpenRouter',
    apiVersion: 'v1',
    endpoints: endpointPaths(OPENROUTER_ROUTES),
    routes: OPENROUTER_ROUTES,
    forwardHeaders: ['http-referer', 'x-title', 'x-openrouter-title'],
    authMethod: 'bearer',
    requiresOrg: false,
    models: Object.keys(pricingTable),
    get baseUrl(): string {
      return options.baseUrl ?? resolveBaseUrl(PROVIDER_ID, DEFAULT_BASE_URL);
    },
  };

  async function management(
    adminSecret: string,
    method: string,
    path: string,
    body: unknown,
    callOptions: ProvisionOptions | RetireOptions,
  ) {
    const request = plugin.authorize({ method, url: joinUrl(config.baseUrl, path), headers: {} }, adminSecret);
    return sendRequest(request, body, callOptions);
  }

  const plugin: ProviderPlugin = {
    config,
    pricing: pricingTable,

    authorize(request, secret) {
      setHeader(request.headers, 'Authorization', `Bearer ${secret}`);
      if (options.referer && readHeader(request.headers, 'http-referer') === undefined) {
        request.headers['HTTP-Referer'] = options.referer;
      }
      if (options.title && readHeader(request.headers, 'x-openrouter-title') === undefined) {
        request.headers['X-OpenRouter-Title'] = options.title;
      }
      return request;
    },

    /** `GET /key` describes the key itself: its credit limit, what is left and the usage. */
    async verify(secret, organizationId, callOptions): Promise<VerifyAPIKeyResponse> {
      let exhausted = false;
      const request = { method: 'GET', url: joinUrl(config.baseUrl, '/key'), headers: {} };
      const result = await verifyWithRequest(plugin, request, secret, organizationId, callOptions, (response) => {
        const data = asRecord(asRecord(response.body).data);
        const remaining = asNumber(data.limit_remaining);
        exhausted = remaining !== undefined && remaining <= 0;
        return {
          limits: {
            rateLimit: asNumber(asRecord(data.rate_limit).requests) ?? 0,
            // null means no limit on this key; the spec's shape has no room for "none".
            quotaLimit: asNumber(data.limit) ?? 0,
          },
        };
      });
      // A key whose own credit limit is used up is alive but gets 402 on every call.
      return result.valid && exhausted
        ? { ...result, errorType: 'out_of_credit', reason: 'The credit limit of this key is used up' }
        : result;
    },

    usageFrom: usageOf,

    // The usage (with cost) arrives in the last message.
    createStreamTap: (endpoint) =>
      endpoint && usageKindOf(endpoint) === 'read'
        ? fixedUsageTap(zeroUsage())
        : usageEventTap((json) => usageOf(json)),

    classifyError: classifyOpenRouterError,
    rateLimitsFrom: openRouterRateLimits,
    checkKeyFormat: (secret) => checkFormat(secret, KEY_PATTERN, KEY_FORMAT),
    checkExternalId: (id) => checkFormat(id, KEY_HASH, KEY_HASH_FORMAT),

    /** `POST /keys` with a management key; the key value is in the answer once, then never. */
    async provisionKey(adminSecret: string, provision: ProvisionOptions): Promise<ProvisionedKey> {
      const body: Record<string, unknown> = { name: provision.name };
      if (provision.limitUsd !== undefined) {
        body.limit = provision.limitUsd;
      }
      const response = await management(adminSecret, 'POST', '/keys', body, provision);
      if (response.status < 200 || response.status >= 300) {
        const classified = classifyOpenRouterError(response.status, response.headers, response.body);
        throw new ProviderRequestError(response.status, classified, 'OpenRouter key creation');
      }
      const answer = asRecord(response.body);
      const secret = asString(answer.key);
      const hash = asString(asRecord(answer.data).hash);
      if (!secret || !hash) {
        throw new Error('OpenRouter created a key but its answer carried no key or hash');
      }
      return { secret, externalId: hash };
    },

    async retireKey(adminSecret: string, externalId: string, retire: RetireOptions = {}) {
      if (!KEY_HASH.test(externalId)) {
        throw new Error('externalId is not an OpenRouter key hash');
      }
      const path = `/keys/${encodeURIComponent(externalId)}`;
      const response = await management(adminSecret, 'DELETE', path, undefined, retire);
      // Already gone is what retiring wanted.
      if (response.status === 404 || (response.status >= 200 && response.status < 300)) {
        return;
      }
      const classified = classifyOpenRouterError(response.status, response.headers, response.body);
      throw new ProviderRequestError(response.status, classified, 'OpenRouter key deletion');
    },
  };
  return plugin;
}

export const plugin = createPlugin();
export default plugin;
