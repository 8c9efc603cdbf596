/**
 * OpenAI. Wire facts (Bearer auth, optional organization and
 * project headers, Go-style rate-limit resets, usage in streams only on request).
 */
import {
  hasUsageObject,
  endpointPaths,
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
  usageKindOf,
  verifyWithRequest,
  zeroUsage,
  fixedUsageTap,
  inputOutputUsage,
  type ProviderEndpoint,
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
import { OPENAI_ROUTES } from './routes';

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

/**
 * Usage of a JSON answer, by endpoint. Every call is one request; the tokens come from:
 * - chat, completions, embeddings: `usage.prompt_tokens` / `completion_tokens`;
 * - responses, gpt-image images, gpt-4o transcriptions: `usage.input_tokens` / `output_tokens`;
 * - moderations: none (free), so 0 tokens;
 * - DALL·E images (no usage object): one output unit per image, priced per image in pricing.json;
 * - whisper-1 transcriptions and translations (`usage.type: "duration"`): the seconds of audio,
 *   rounded up, as input units, priced per second in pricing.json;
 * - `read` routes (retrieving a stored completion or response, listing, deleting, creating a
 *   batch or file): 0 tokens, even though a retrieved completion repeats its usage.
 */
function usageFromBody(json: unknown, endpoint?: ProviderEndpoint): UsageCount | undefined {
  const body = asRecord(json);
  const model = asString(body.model);
  if (endpoint && usageKindOf(endpoint) === 'read') {
    return zeroUsage(model);
  }
  const found = openAiStyleUsage(body.usage, model) ?? inputOutputUsage(body.usage, model);
  if (found || !endpoint) {
    return found;
  }
  switch (endpoint.group) {
    case 'moderations':
      return zeroUsage(model);
    case 'images': {
      const images = Array.isArray(body.data) ? body.data.length : 0;
      return { inputTokens: 0, outputTokens: images, totalTokens: images, ...(model ? { model } : {}) };
    }
    case 'audio': {
      const usage = asRecord(body.usage);
      const seconds = usage.type === 'duration' ? asNumber(usage.seconds) : asNumber(body.duration);
      const units = seconds === undefined ? 0 : Math.ceil(seconds);
      return { inputTokens: units, outputTokens: 0, totalTokens: units, ...(model ? { model } : {}) };
    }
    default:
      return undefined;
  }
}

/** TTS models priced per character of input; gpt-4o-mini-tts is priced per token instead. */
const CHARACTER_PRICED_SPEECH = new Set(['tts-1', 'tts-1-hd']);

/** Speech answers are audio bytes: tts-1 and tts-1-hd are counted as the input's characters. */
function usageFromSpeechRequest(json: unknown, endpoint?: ProviderEndpoint): UsageCount | undefined {
  const body = asRecord(json);
  const model = asString(body.model);
  if (endpoint?.path !== '/audio/speech' || model === undefined || !CHARACTER_PRICED_SPEECH.has(model)) {
    return undefined;
  }
  const characters = [...(asString(body.input) ?? '')].length;
  return { inputTokens: characters, outputTokens: 0, totalTokens: characters, model };
}

/** Responses streams end with one of these, each carrying the whole response and its usage. */
const RESPONSE_TERMINAL_EVENTS = new Set(['response.completed', 'response.incomplete', 'response.failed']);

/** The usage in one event of a Chat Completions, Completions, Responses, transcription or speech stream. */
function usageFromStreamEvent(data: string): UsageCount | undefined {
  const chunk = asRecord(parseJson(data));
  const type = asString(chunk.type);
  if (type !== undefined && RESPONSE_TERMINAL_EVENTS.has(type)) {
    const response = asRecord(chunk.response);
    return inputOutputUsage(response.usage, asString(response.model));
  }
  // transcript.text.done, speech.audio.done, image_generation.completed carry a usage object.
  return openAiStyleUsage(chunk.usage, asString(chunk.model)) ?? inputOutputUsage(chunk.usage, asString(chunk.model));
}

function isUsageOnlyChunk(data: string): boolean {
  const chunk = parseJson(data);
  return isRecord(chunk) && Array.isArray(chunk.choices) && chunk.choices.length === 0 && isRecord(chunk.usage);
}

/** 401 codes that blame the request's account scoping, not the key. */
const REQUEST_SCOPED_401 = new Set(['mismatched_organization', 'mismatched_project', 'invalid_organization']);

export function classifyOpenAiError(status: number, headers: HeadersLike, body: unknown): ClassifiedError {
  const error = asRecord(asRecord(body).error);
  const code = asString(error.code);
  const type = asString(error.type);
  const message = errorMessageOf(body);
  const classified = (errorType: ClassifiedError['type']): ClassifiedError =>
    message === undefined ? { type: errorType } : { type: errorType, message };

  if (status === 401 && (code === 'missing_scope' || REQUEST_SCOPED_401.has(code ?? ''))) {
    // A restricted key that lacks a permission for this call is alive: deactivating it would
    // throw away a working key. So is one asked for another organisation or project than its
    // own: the request, not the key, is what cannot succeed.
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
    endpoints: endpointPaths(OPENAI_ROUTES),
    routes: OPENAI_ROUTES,
    forwardHeaders: ['openai-beta'],
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

    usageFromRequest: usageFromSpeechRequest,

    createStreamTap(endpoint) {
      if (endpoint && usageKindOf(endpoint) === 'read') {
        // Replaying a stored response (`GET /responses/{id}?stream=true`) is not new usage.
        return fixedUsageTap(zeroUsage());
      }
      let usage: UsageCount | undefined;
      return sseUsageTap(
        (event) => {
          // Content chunks are the bulk of a stream and never carry a count: skip parsing them.
          if (hasUsageObject(event.data)) {
            usage = usageFromStreamEvent(event.data) ?? usage;
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
