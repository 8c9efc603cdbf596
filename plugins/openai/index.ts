/**
 * OpenAI. Wire facts: /work/shared/providers.md#openai (Bearer auth, optional organization and
 * project headers, Go-style rate-limit resets, usage in streams only on request).
 */
import {
  asNumber,
  asRecord,
  asString,
  checkFormat,
  errorMessageOf,
  errorTypeOfStatus,
  isRecord,
  joinUrl,
  limitsFromSnapshot,
  openAiStyleRateLimits,
  openAiStyleUsage,
  parseJson,
  parseRetryAfter,
  ProviderRequestError,
  readHeader,
  resolveBaseUrl,
  sendRequest,
  setHeader,
  sseUsageTap,
  verifyWithRequest,
  type ClassifiedError,
  type HeadersLike,
  type PreparedStreamingRequest,
  type ProviderConfig,
  type ProviderPlugin,
  type ProvisionedKey,
  type ProvisionOptions,
  type RetireOptions,
  type UsageCount,
} from '../../src/plugin-system/provider-plugin';
import pricingTable from './pricing.json';

export const PROVIDER_ID = 'openai';
export const DEFAULT_BASE_URL = 'https://api.openai.com/v1';

export interface OpenAiPluginOptions {
  /** Wins over KEYWARD_PROVIDER_OPENAI_BASE_URL and the default. */
  baseUrl?: string;
}

/**
 * Every kind of OpenAI key carries `T3BlbkFJ` (base64 of "OpenAI") somewhere in its body; the
 * secret scanners rely on the same marker.
 */
const KEY_PATTERN = /^sk-(?:(?:proj|svcacct|admin|None)-)?[A-Za-z0-9_-]*T3BlbkFJ[A-Za-z0-9_-]*$/;
const KEY_FORMAT =
  'an OpenAI key: "sk-proj-", "sk-svcacct-", "sk-admin-" or legacy "sk-" followed by letters, digits, "-" and "_", containing "T3BlbkFJ"';

/**
 * The organization id Keyward stores for a key may name the organization (`org-…`), the project
 * (`proj_…`) or both as `org-…/proj_…`; each goes into its own header.
 */
function organizationHeaders(organizationId: string | undefined): Record<string, string> {
  const headers: Record<string, string> = {};
  for (const part of (organizationId ?? '').split('/').map((item) => item.trim())) {
    if (part.startsWith('proj_')) {
      headers['OpenAI-Project'] = part;
    } else if (part.length > 0) {
      headers['OpenAI-Organization'] = part;
    }
  }
  return headers;
}

/** Chat Completions and legacy Completions report usage in `usage`; Responses in its own shape. */
function usageFromBody(json: unknown): UsageCount | undefined {
  const body = asRecord(json);
  const model = asString(body.model);
  const chat = openAiStyleUsage(body.usage, model);
  if (chat) {
    return chat;
  }
  const usage = asRecord(body.usage);
  const input = asNumber(usage.input_tokens);
  if (input === undefined) {
    return undefined;
  }
  const output = asNumber(usage.output_tokens) ?? 0;
  const count: UsageCount = {
    inputTokens: input,
    outputTokens: output,
    totalTokens: asNumber(usage.total_tokens) ?? input + output,
  };
  const cached = asNumber(asRecord(usage.input_tokens_details).cached_tokens);
  if (cached !== undefined && cached > 0) {
    count.cachedInputTokens = cached;
  }
  if (model !== undefined) {
    count.model = model;
  }
  return count;
}

function isUsageOnlyChunk(data: string): boolean {
  const chunk = parseJson(data);
  return isRecord(chunk) && Array.isArray(chunk.choices) && chunk.choices.length === 0 && isRecord(chunk.usage);
}

export function classifyOpenAiError(status: number, headers: HeadersLike, body: unknown): ClassifiedError {
  const error = asRecord(asRecord(body).error);
  const code = asString(error.code);
  const type = asString(error.type);
  const message = errorMessageOf(body);
  const classified = (errorType: ClassifiedError['type']): ClassifiedError =>
    message === undefined ? { type: errorType } : { type: errorType, message };

  if (status === 401 && code === 'missing_scope') {
    // A restricted key that lacks a permission for this call is alive: deactivating it would
    // throw away a working key. The request, not the key, is what cannot succeed.
    return classified('bad_request');
  }
  if (status === 429 && (code === 'insufficient_quota' || type === 'insufficient_quota')) {
    // Same status as a rate limit, but waiting does not help: the account has no credit or hit
    // its spend limit.
    return classified('out_of_credit');
  }
  const result = classified(errorTypeOfStatus(status));
  if (result.type === 'rate_limited' || result.type === 'provider_error') {
    const retryAfterMs =
      parseRetryAfter(readHeader(headers, 'retry-after')) ?? openAiStyleRateLimits(headers).requests?.resetMs;
    if (retryAfterMs !== undefined) {
      result.retryAfterMs = retryAfterMs;
    }
  }
  return result;
}

const PROJECT_ID = /^proj_[A-Za-z0-9_-]{1,64}$/;
const SERVICE_ACCOUNT_ID = /^svc_acct_[A-Za-z0-9_-]{1,64}$/;
const EXTERNAL_ID = /^(?:proj_[A-Za-z0-9_-]{1,64}\/)?svc_acct_[A-Za-z0-9_-]{1,64}$/;
const EXTERNAL_ID_FORMAT = 'an OpenAI service account id (svc_acct_…, optionally proj_…/svc_acct_…)';

/** A path segment from an id that must have its provider's shape: never "..", never a "/". */
function segment(value: string, pattern: RegExp, what: string): string {
  if (!pattern.test(value)) {
    throw new Error(`${what} does not look like an OpenAI id`);
  }
  return encodeURIComponent(value);
}

/** `proj_…/svc_acct_…` as provisionKey returns it, or a bare account id plus options.projectId. */
function serviceAccountPath(externalId: string, projectId: string | undefined): string {
  const [first, second] = externalId.split('/');
  const project = second === undefined ? projectId : first;
  const account = second ?? first;
  if (!project || !account) {
    throw new Error('OpenAI service accounts live in a project: a projectId is required');
  }
  return `/organization/projects/${segment(project, PROJECT_ID, 'projectId')}/service_accounts/${segment(account, SERVICE_ACCOUNT_ID, 'externalId')}`;
}

export function createPlugin(options: OpenAiPluginOptions = {}): ProviderPlugin {
  const config: ProviderConfig = {
    id: PROVIDER_ID,
    name: 'OpenAI',
    apiVersion: 'v1',
    endpoints: ['/chat/completions', '/responses', '/completions', '/embeddings', '/models'],
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

    authorize(request, secret, organizationId) {
      setHeader(request.headers, 'Authorization', `Bearer ${secret}`);
      for (const [name, value] of Object.entries(organizationHeaders(organizationId))) {
        setHeader(request.headers, name, value);
      }
      return request;
    },

    verify(secret, organizationId, callOptions) {
      const request = { method: 'GET', url: joinUrl(config.baseUrl, '/models'), headers: {} };
      return verifyWithRequest(plugin, request, secret, organizationId, callOptions, (response) => {
        const organization = readHeader(response.headers, 'openai-organization');
        return {
          ...(organization ? { organization } : {}),
          ...limitsFromSnapshot(openAiStyleRateLimits(response.headers)),
        };
      });
    },

    usageFrom: usageFromBody,

    createStreamTap() {
      let usage: UsageCount | undefined;
      return sseUsageTap(
        (event) => {
          // Content chunks are the bulk of a stream and never carry a count: skip parsing them.
          if (!event.data.includes('"usage"')) {
            return;
          }
          const chunk = asRecord(parseJson(event.data));
          // Responses API streams end with `response.completed` carrying the whole response.
          const found =
            chunk.type === 'response.completed'
              ? usageFromBody(chunk.response)
              : openAiStyleUsage(chunk.usage, asString(chunk.model));
          if (found) {
            usage = found;
          }
        },
        () => usage,
      );
    },

    prepareStreamingRequest(body): PreparedStreamingRequest {
      const streamOptions = asRecord(body.stream_options);
      // Only Chat Completions and Completions need asking; the Responses API always reports.
      const asksForUsage = Array.isArray(body.messages) || body.prompt !== undefined;
      if (!asksForUsage || streamOptions.include_usage === true) {
        return { body, clientRequestedUsage: true };
      }
      return {
        body: { ...body, stream_options: { ...streamOptions, include_usage: true } },
        clientRequestedUsage: false,
        isAddedUsageEvent: isUsageOnlyChunk,
      };
    },

    classifyError: classifyOpenAiError,

    rateLimitsFrom: (headers) => openAiStyleRateLimits(headers),

    checkKeyFormat: (secret) => checkFormat(secret, KEY_PATTERN, KEY_FORMAT),
    checkExternalId: (id) => checkFormat(id, EXTERNAL_ID, EXTERNAL_ID_FORMAT),

    /** Creates a service account in `options.projectId`; its key is the new secret. */
    async provisionKey(adminSecret: string, provision: ProvisionOptions): Promise<ProvisionedKey> {
      if (!provision.projectId) {
        throw new Error('OpenAI service accounts live in a project: a projectId is required');
      }
      const path = `/organization/projects/${segment(provision.projectId, PROJECT_ID, 'projectId')}/service_accounts`;
      const request = plugin.authorize(
        { method: 'POST', url: joinUrl(config.baseUrl, path), headers: {} },
        adminSecret,
      );
      const response = await sendRequest(request, { name: provision.name }, provision);
      if (response.status < 200 || response.status >= 300) {
        const classified = classifyOpenAiError(response.status, response.headers, response.body);
        throw new ProviderRequestError(response.status, classified, 'OpenAI service account creation');
      }
      const account = asRecord(response.body);
      const secret = asString(asRecord(account.api_key).value);
      const accountId = asString(account.id);
      if (!secret || !accountId) {
        throw new Error('OpenAI created a service account but its answer carried no key');
      }
      return { secret, externalId: `${provision.projectId}/${accountId}` };
    },

    async retireKey(adminSecret: string, externalId: string, retire: RetireOptions = {}) {
      const path = serviceAccountPath(externalId, retire.projectId);
      const request = plugin.authorize(
        { method: 'DELETE', url: joinUrl(config.baseUrl, path), headers: {} },
        adminSecret,
      );
      const response = await sendRequest(request, undefined, retire);
      // Already gone is what retiring wanted.
      if (response.status === 404 || (response.status >= 200 && response.status < 300)) {
        return;
      }
      const classified = classifyOpenAiError(response.status, response.headers, response.body);
      throw new ProviderRequestError(response.status, classified, 'OpenAI service account deletion');
    },
  };
  return plugin;
}

export const plugin = createPlugin();
export default plugin;
