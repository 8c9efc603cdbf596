/**
 * Anthropic. Wire facts (`x-api-key` plus a pinned
 * `anthropic-version`, typed error bodies, RFC 3339 rate-limit resets, cumulative stream usage).
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
  limitsFromSnapshot,
  millisecondsUntil,
  parseJson,
  parseRetryAfter,
  ProviderRequestError,
  readHeader,
  readNumberHeader,
  removeHeader,
  resolveBaseUrl,
  sendRequest,
  setHeader,
  sseUsageTap,
  usageKindOf,
  verifyWithRequest,
  zeroUsage,
  fixedUsageTap,
  type ClassifiedError,
  type HeadersLike,
  type ProviderConfig,
  type ProviderErrorType,
  type ProviderPlugin,
  type RateLimitSnapshot,
  type RetireOptions,
  type UsageCount,
} from '../../src/plugin-system/provider-plugin';
import pricingTable from './pricing.json';
import { ANTHROPIC_ROUTES } from './routes';

export const PROVIDER_ID = 'anthropic';
export const DEFAULT_BASE_URL = 'https://api.anthropic.com';
/** The only version of the Messages API; every request must name it. */
export const ANTHROPIC_VERSION = '2023-06-01';

export interface AnthropicPluginOptions {
  /** Wins over KEYWARD_PROVIDER_ANTHROPIC_BASE_URL and the default. */
  baseUrl?: string;
}

/** API keys end in `AA`; admin keys (`sk-ant-admin01-…`) are accepted for the admin API. */
const KEY_PATTERN = /^sk-ant-(?:api03|admin01)-[A-Za-z0-9_-]+AA$/;
/** The admin API's id of a key. */
const API_KEY_ID = /^apikey_[A-Za-z0-9]{1,64}$/;
const API_KEY_ID_FORMAT = 'an Anthropic API key id (apikey_…)';
const KEY_FORMAT =
  'an Anthropic key: "sk-ant-api03-" (or "sk-ant-admin01-" for admin keys) followed by letters, digits, "-" and "_", ending in "AA"';

const ERROR_TYPES: Record<string, ProviderErrorType> = {
  authentication_error: 'invalid_key',
  billing_error: 'out_of_credit',
  // The key is valid but this workspace/key may not do this: not a dead key.
  permission_error: 'bad_request',
  not_found_error: 'bad_request',
  request_too_large: 'bad_request',
  rate_limit_error: 'rate_limited',
  api_error: 'provider_error',
  overloaded_error: 'provider_error',
  timeout_error: 'timeout',
};

export function classifyAnthropicError(status: number, headers: HeadersLike, body: unknown): ClassifiedError {
  const errorType = asString(asRecord(asRecord(body).error).type);
  const message = errorMessageOf(body);
  let type: ProviderErrorType =
    (errorType !== undefined && Object.hasOwn(ERROR_TYPES, errorType) ? ERROR_TYPES[errorType] : undefined) ??
    errorTypeOfStatus(status);
  // Anthropic reports a reached spend limit or an empty balance as a 400
  // invalid_request_error; only the message tells it from a malformed request.
  if (
    type === 'bad_request' &&
    message !== undefined &&
    /credit balance|spend(?:ing)? limit|usage limit|billing/i.test(message)
  ) {
    type = 'out_of_credit';
  }
  const classified: ClassifiedError = message === undefined ? { type } : { type, message };
  if (type === 'rate_limited' || type === 'provider_error') {
    const retryAfterMs = parseRetryAfter(readHeader(headers, 'retry-after'));
    if (retryAfterMs !== undefined) {
      classified.retryAfterMs = retryAfterMs;
    }
  }
  return classified;
}

export function anthropicRateLimits(headers: HeadersLike, now = Date.now()): RateLimitSnapshot {
  const snapshot: RateLimitSnapshot = {};
  const kinds = [
    ['requests', 'requests'],
    ['tokens', 'tokens'],
    ['input-tokens', 'inputTokens'],
    ['output-tokens', 'outputTokens'],
  ] as const;
  for (const [header, key] of kinds) {
    const window = compactWindow({
      limit: readNumberHeader(headers, `anthropic-ratelimit-${header}-limit`),
      remaining: readNumberHeader(headers, `anthropic-ratelimit-${header}-remaining`),
      resetMs: millisecondsUntil(readHeader(headers, `anthropic-ratelimit-${header}-reset`), now),
    });
    if (window) {
      snapshot[key] = window;
    }
  }
  const retryAfterMs = parseRetryAfter(readHeader(headers, 'retry-after'), now);
  if (retryAfterMs !== undefined) {
    snapshot.retryAfterMs = retryAfterMs;
  }
  return snapshot;
}

/**
 * Anthropic's `input_tokens` exclude cache reads and writes; Keyward counts all input and notes
 * the cached parts, so that one costOf serves every provider.
 */
function usageFromAnthropic(usage: unknown, model: string | undefined, previous?: UsageCount): UsageCount | undefined {
  const fields = asRecord(usage);
  const uncached = asNumber(fields.input_tokens);
  const written = asNumber(fields.cache_creation_input_tokens);
  const read = asNumber(fields.cache_read_input_tokens);
  const output = asNumber(fields.output_tokens);
  if (uncached === undefined && output === undefined && previous === undefined) {
    return undefined;
  }
  // Stream events repeat only some fields; what an event leaves out keeps its earlier value.
  const cacheRead = read ?? previous?.cachedInputTokens ?? 0;
  const cacheWrite = written ?? previous?.cacheWriteInputTokens ?? 0;
  const input =
    uncached === undefined && read === undefined && written === undefined
      ? (previous?.inputTokens ?? 0)
      : (uncached ?? 0) + cacheRead + cacheWrite;
  const outputTokens = output ?? previous?.outputTokens ?? 0;
  const count: UsageCount = {
    inputTokens: input,
    outputTokens,
    totalTokens: input + outputTokens,
  };
  if (cacheRead > 0) {
    count.cachedInputTokens = cacheRead;
  }
  if (cacheWrite > 0) {
    count.cacheWriteInputTokens = cacheWrite;
  }
  const knownModel = model ?? previous?.model;
  if (knownModel !== undefined) {
    count.model = knownModel;
  }
  return count;
}

export function createPlugin(options: AnthropicPluginOptions = {}): ProviderPlugin {
  const config: ProviderConfig = {
    id: PROVIDER_ID,
    name: 'Anthropic',
    apiVersion: ANTHROPIC_VERSION,
    endpoints: endpointPaths(ANTHROPIC_ROUTES),
    routes: ANTHROPIC_ROUTES,
    forwardHeaders: ['anthropic-version', 'anthropic-beta'],
    authMethod: 'header',
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
      // A bearer header would make Anthropic try OAuth instead of the key.
      removeHeader(request.headers, 'authorization');
      setHeader(request.headers, 'x-api-key', secret);
      if (readHeader(request.headers, 'anthropic-version') === undefined) {
        setHeader(request.headers, 'anthropic-version', ANTHROPIC_VERSION);
      }
      return request;
    },

    verify(secret, organizationId, callOptions) {
      const request = { method: 'GET', url: joinUrl(config.baseUrl, '/v1/models'), headers: {} };
      return verifyWithRequest(plugin, request, secret, organizationId, callOptions, (response) => {
        const organization = readHeader(response.headers, 'anthropic-organization-id');
        return {
          ...(organization ? { organization } : {}),
          ...limitsFromSnapshot(anthropicRateLimits(response.headers)),
        };
      });
    },

    /**
     * Messages answers carry `usage`. count_tokens (`{ input_tokens }` is a count, not usage),
     * message batches (billed when they run) and every retrieval are `read` routes: 0 tokens.
     */
    usageFrom(json, endpoint) {
      const body = asRecord(json);
      if (endpoint && usageKindOf(endpoint) === 'read') {
        return zeroUsage(asString(body.model));
      }
      return usageFromAnthropic(body.usage, asString(body.model));
    },

    createStreamTap(endpoint) {
      if (endpoint && usageKindOf(endpoint) === 'read') {
        return fixedUsageTap(zeroUsage());
      }
      let usage: UsageCount | undefined;
      return sseUsageTap(
        (event) => {
          // Text deltas are most of a stream and never carry a count: skip parsing them.
          if (!event.data.includes('"message_')) {
            return;
          }
          const data = asRecord(parseJson(event.data));
          if (data.type === 'message_start') {
            const message = asRecord(data.message);
            usage = usageFromAnthropic(message.usage, asString(message.model)) ?? usage;
          } else if (data.type === 'message_delta') {
            // output_tokens here is the running total: the last one wins, they are not summed.
            usage = usageFromAnthropic(data.usage, undefined, usage) ?? usage;
          }
        },
        () => usage,
      );
    },

    classifyError: classifyAnthropicError,
    rateLimitsFrom: anthropicRateLimits,
    checkKeyFormat: (secret) => checkFormat(secret, KEY_PATTERN, KEY_FORMAT),
    checkExternalId: (id) => checkFormat(id, API_KEY_ID, API_KEY_ID_FORMAT),

    /**
     * Anthropic's admin API cannot mint keys, but it can switch one off: rotation asks an admin
     * for the new key and then retires the old one here. `externalId` is the key's `apikey_…` id.
     */
    async retireKey(adminSecret: string, externalId: string, retire: RetireOptions = {}) {
      if (!API_KEY_ID.test(externalId)) {
        throw new Error('externalId is not an Anthropic API key id');
      }
      const path = `/v1/organizations/api_keys/${encodeURIComponent(externalId)}`;
      const request = plugin.authorize(
        { method: 'POST', url: joinUrl(config.baseUrl, path), headers: {} },
        adminSecret,
      );
      const response = await sendRequest(request, { status: 'inactive' }, retire);
      if (response.status >= 200 && response.status < 300) {
        return;
      }
      const classified = classifyAnthropicError(response.status, response.headers, response.body);
      throw new ProviderRequestError(response.status, classified, 'Anthropic key deactivation');
    },
  };
  return plugin;
}

export const plugin = createPlugin();
export default plugin;
