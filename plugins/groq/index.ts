/**
 * Groq. Wire facts (OpenAI-compatible API under /openai/v1, no
 * key-management API, stream usage in `x_groq.usage`, 498 for capacity).
 */
import {
  endpointPaths,
  asRecord,
  asString,
  checkFormat,
  errorMessageOf,
  errorTypeOfStatus,
  joinUrl,
  limitsFromSnapshot,
  openAiStyleRateLimits,
  openAiStyleUsage,
  parseRetryAfter,
  readHeader,
  resolveBaseUrl,
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
  type ProviderErrorType,
  type ProviderPlugin,
  type UsageCount,
} from '../../src/plugin-system/provider-plugin';
import pricingTable from './pricing.json';
import { GROQ_ROUTES } from './routes';

export const PROVIDER_ID = 'groq';
export const DEFAULT_BASE_URL = 'https://api.groq.com/openai/v1';

export interface GroqPluginOptions {
  /** Wins over KEYWARD_PROVIDER_GROQ_BASE_URL and the default. */
  baseUrl?: string;
}

const KEY_PATTERN = /^gsk_[A-Za-z0-9]{52}$/;
const KEY_FORMAT = 'a Groq key: "gsk_" followed by 52 letters and digits';

export function classifyGroqError(status: number, headers: HeadersLike, body: unknown): ClassifiedError {
  const code = asString(asRecord(asRecord(body).error).code);
  const message = errorMessageOf(body);
  let type: ProviderErrorType = errorTypeOfStatus(status);
  if (status === 498) {
    // Groq's own status for "at capacity" (flex tier): the provider's trouble, retry later.
    type = 'provider_error';
  } else if (
    code === 'blocked_api_access' ||
    (status === 400 && message !== undefined && /spend limit/i.test(message))
  ) {
    // No prepaid credit at Groq: a reached organization spend limit blocks every key.
    type = 'out_of_credit';
  }
  const classified: ClassifiedError = message === undefined ? { type } : { type, message };
  if (type === 'rate_limited' || type === 'provider_error') {
    const retryAfterMs =
      parseRetryAfter(readHeader(headers, 'retry-after')) ?? openAiStyleRateLimits(headers).requests?.resetMs;
    if (retryAfterMs !== undefined) {
      classified.retryAfterMs = retryAfterMs;
    }
  }
  return classified;
}

/**
 * Non-streamed chat answers carry `usage`; streamed ones put it into `x_groq.usage` of the last
 * chunk; the Responses API uses `input_tokens` / `output_tokens` (its stream ends with
 * `response.completed`, `response.incomplete` or `response.failed` carrying the response).
 * Transcriptions carry no token usage (Groq bills audio by the hour): 0 tokens, one request.
 */
function usageOf(json: unknown, endpoint?: ProviderEndpoint): UsageCount | undefined {
  const body = asRecord(json);
  const model = asString(body.model);
  if (endpoint && usageKindOf(endpoint) === 'read') {
    return zeroUsage(model);
  }
  const response = isRecord(body.response) ? body.response : undefined;
  const found =
    openAiStyleUsage(body.usage, model) ??
    openAiStyleUsage(asRecord(body.x_groq).usage, model) ??
    inputOutputUsage(body.usage, model) ??
    (response ? inputOutputUsage(response.usage, asString(response.model)) : undefined);
  return found ?? (endpoint?.group === 'audio' ? zeroUsage(model) : undefined);
}

export function createPlugin(options: GroqPluginOptions = {}): ProviderPlugin {
  const config: ProviderConfig = {
    id: PROVIDER_ID,
    name: 'Groq',
    apiVersion: 'openai/v1',
    endpoints: endpointPaths(GROQ_ROUTES),
    routes: GROQ_ROUTES,
    authMethod: 'bearer',
    requiresOrg: false,
    models: Object.keys(pricingTable),
    get baseUrl(): string {
      return options.baseUrl ?? resolveBaseUrl(PROVIDER_ID, DEFAULT_BASE_URL);
    },
  };

  const plugin: ProviderPlugin = {
    config,
    pricing: pricingTable,

    authorize(request, secret) {
      setHeader(request.headers, 'Authorization', `Bearer ${secret}`);
      return request;
    },

    verify(secret, organizationId, callOptions) {
      const request = { method: 'GET', url: joinUrl(config.baseUrl, '/models'), headers: {} };
      return verifyWithRequest(plugin, request, secret, organizationId, callOptions, (response) =>
        limitsFromSnapshot(openAiStyleRateLimits(response.headers)),
      );
    },

    usageFrom: usageOf,

    // Groq puts the usage of a stream into `x_groq.usage` of its last chunk; usageOf reads both.
    createStreamTap: (endpoint) =>
      endpoint && usageKindOf(endpoint) === 'read'
        ? fixedUsageTap(zeroUsage())
        : usageEventTap((json) => usageOf(json)),

    classifyError: classifyGroqError,
    rateLimitsFrom: (headers) => openAiStyleRateLimits(headers),
    checkKeyFormat: (secret) => checkFormat(secret, KEY_PATTERN, KEY_FORMAT),
  };
  return plugin;
}

export const plugin = createPlugin();
export default plugin;
