/**
 * The contract between Keyward and a provider plugin, plus the small helpers every plugin needs.
 *
 * This module imports nothing but `./sse` (itself dependency-free) so that a plugin written
 * outside this repository can depend on it without pulling in Nest. A third-party plugin that
 * wants no runtime dependency on Keyward at all can use `import type` for the contract and skip
 * the helpers.
 *
 * Secrets: no helper here ever puts a key into an error message, and `redactSecrets` is applied
 * to every piece of provider text that ends up in a `reason` or `message`, because providers
 * echo (partly masked) keys back in their error bodies.
 */
import { SseReader, type SseEvent } from './sse';

export type { SseEvent } from './sse';

// ---- the contract -------------------------------------------------------------------------------

/** The spec's ProviderConfig (docs/spec api-key-management) plus the plugin's id and base URL. */
export interface ProviderConfig {
  /** Stable identifier, `^[a-z][a-z0-9-]*$`; the manifest's `keyward.id`. */
  id: string;
  name: string;
  apiVersion: string;
  /** Paths, relative to `baseUrl`, that the gateway may forward to this provider. */
  endpoints: string[];
  authMethod: 'bearer' | 'header' | 'query';
  requiresOrg: boolean;
  models: string[];
  /**
   * Where the API lives, e.g. `https://api.openai.com/v1`. Read it each time it is needed:
   * built-in plugins compute it on access so that `KEYWARD_PROVIDER_<ID>_BASE_URL` set after
   * import (as tests do) still applies.
   */
  baseUrl: string;
}

/** USD per million tokens. */
export interface ModelPrice {
  input: number;
  output: number;
  /** Price of input tokens served from the provider's prompt cache; input price when absent. */
  cachedInput?: number;
  /** Price of input tokens written to the prompt cache (Anthropic); input price when absent. */
  cacheWrite?: number;
}

/** Model id → price. Data, not code: each plugin ships `pricing.json` and admins may override it. */
export type PricingTable = Record<string, ModelPrice>;

export type ProviderErrorType =
  /** The key is dead (revoked, deleted, wrong): deactivate it and alert. */
  | 'invalid_key'
  /** Transient: retry after `retryAfterMs` or fail over to another key. */
  | 'rate_limited'
  /** The account behind the key has no credit or hit its spend limit: fail over and alert. */
  | 'out_of_credit'
  /**
   * The request itself is refused; another attempt with the same request will not help. This
   * includes a key that is alive but not allowed to do this (OpenAI's `missing_scope`,
   * Anthropic's `permission_error`, a region block): it must not be deactivated as dead.
   */
  | 'bad_request'
  /** The provider failed (5xx, overloaded, capacity): retry or fail over. */
  | 'provider_error'
  /** No answer in time (also the provider's own 408/504). */
  | 'timeout';

export interface ClassifiedError {
  type: ProviderErrorType;
  retryAfterMs?: number;
  /** The provider's explanation with anything key-like redacted; safe to log and display. */
  message?: string;
}

/** The spec's VerifyAPIKeyResponse, plus why a key failed. */
export interface VerifyAPIKeyResponse {
  /**
   * True when the provider accepted the key. False with `errorType: 'invalid_key'` means the key
   * is dead; false with `provider_error` or `timeout` means it could not be checked right now.
   */
  valid: boolean;
  details?: {
    organization?: string;
    limits?: {
      /** Requests allowed per the provider's window; 0 when the provider does not say. */
      rateLimit: number;
      /**
       * Header-based providers: tokens allowed per window. OpenRouter: the key's credit limit in
       * USD. 0 when the provider does not say or sets no limit.
       */
      quotaLimit: number;
    };
    /** Everything the rate-limit headers said, for display. */
    rateLimits?: RateLimitSnapshot;
  };
  /** Why the key is invalid or could not be verified, or a caveat on a valid key; never the key. */
  reason?: string;
  errorType?: ProviderErrorType;
}

export interface UsageCount {
  /** All input tokens, cached ones included. */
  inputTokens: number;
  outputTokens: number;
  /** Part of `inputTokens` read from the prompt cache. */
  cachedInputTokens?: number;
  /** Part of `inputTokens` written to the prompt cache (Anthropic bills these higher). */
  cacheWriteInputTokens?: number;
  totalTokens: number;
  /** USD as reported by the provider itself (OpenRouter); wins over the pricing table. */
  costUsd?: number;
  model?: string;
}

/**
 * Counts the tokens of a streamed answer while the gateway passes the bytes on. Feed it every
 * chunk as received; it keeps only the unfinished event and the usage seen so far.
 */
export interface StreamUsageTap {
  push(chunk: Buffer | string): void;
  /** The usage reported so far; undefined when the stream carried none (yet). */
  result(): UsageCount | undefined;
}

export interface PreparedStreamingRequest {
  /** The body to send upstream (a copy when it had to change). */
  body: Record<string, unknown>;
  /**
   * False when the plugin asked the provider for usage the client did not ask for: then the
   * gateway must not forward events for which `isAddedUsageEvent(data)` returns true.
   */
  clientRequestedUsage: boolean;
  isAddedUsageEvent?(data: string): boolean;
}

export interface OutgoingRequest {
  method: string;
  url: URL;
  headers: Record<string, string>;
}

export interface RateLimitWindow {
  limit?: number;
  remaining?: number;
  /** Milliseconds from the response until the window resets. */
  resetMs?: number;
}

export interface RateLimitSnapshot {
  requests?: RateLimitWindow;
  tokens?: RateLimitWindow;
  /** Anthropic counts input and output tokens separately as well. */
  inputTokens?: RateLimitWindow;
  outputTokens?: RateLimitWindow;
  retryAfterMs?: number;
}

/** `expected` names the format (e.g. "gsk_ followed by 52 letters and digits"), never the key. */
export type KeyFormatCheck = { ok: true } | { ok: false; expected: string };

export interface ProvisionedKey {
  /** The new key, shown once by the provider: store it encrypted straight away. */
  secret: string;
  /** The provider's handle for retiring it later (OpenRouter key hash, OpenAI service account). */
  externalId: string;
}

/** Headers as fetch returns them or as Node's http module does. */
export type HeadersLike = Headers | Record<string, string | string[] | number | undefined>;

export interface CallOptions {
  /** Defaults to the global fetch; tests and proxies may pass their own. */
  fetch?: typeof fetch;
  /** Defaults to 10 seconds. */
  timeoutMs?: number;
}

export interface ProvisionOptions extends CallOptions {
  name: string;
  organizationId?: string;
  projectId?: string;
  /** OpenRouter: credit limit of the new key in USD. */
  limitUsd?: number;
}

export interface RetireOptions extends CallOptions {
  organizationId?: string;
  projectId?: string;
}

export interface ProviderPlugin {
  readonly config: ProviderConfig;
  readonly pricing: PricingTable;
  /** Applies the provider's auth method to a request bound for it; returns the same request. */
  authorize(request: OutgoingRequest, secret: string, organizationId?: string): OutgoingRequest;
  /** The cheapest real call that proves the key works. Never throws for provider answers. */
  verify(secret: string, organizationId?: string, options?: CallOptions): Promise<VerifyAPIKeyResponse>;
  /** Tokens from a JSON answer; undefined when it carries no usage. */
  usageFrom(json: unknown): UsageCount | undefined;
  createStreamTap(): StreamUsageTap;
  /** Adjusts a streaming request so that the provider reports usage (OpenAI's include_usage). */
  prepareStreamingRequest?(body: Record<string, unknown>): PreparedStreamingRequest;
  /** `body` is the parsed JSON error body, or the raw text when it was not JSON. */
  classifyError(status: number, headers: HeadersLike, body: unknown): ClassifiedError;
  /** `now` (epoch ms) only matters for providers that send reset times rather than durations. */
  rateLimitsFrom(headers: HeadersLike, now?: number): RateLimitSnapshot;
  checkKeyFormat(secret: string): KeyFormatCheck;
  /**
   * Whether `id` is this provider's id of a key (the `externalId` retireKey takes). Keyward
   * refuses an externalId that fails it, so no id can steer a management call elsewhere.
   */
  checkExternalId?(id: string): KeyFormatCheck;
  /** Mints a key with an admin/management key, for automatic rotation. */
  provisionKey?(adminSecret: string, options: ProvisionOptions): Promise<ProvisionedKey>;
  /** Deletes or disables a key minted by provisionKey (or known by its external id). */
  retireKey?(adminSecret: string, externalId: string, options?: RetireOptions): Promise<void>;
}

/** Identity: gives a plugin object literal its type without widening. */
export function definePlugin<T extends ProviderPlugin>(plugin: T): T {
  return plugin;
}

// ---- cost ---------------------------------------------------------------------------------------

export interface CostResult {
  /** USD. */
  cost: number;
  /** True when neither the provider nor the pricing table knew the model: cost is 0. */
  unpriced: boolean;
}

/**
 * The price of `model`. Providers answer with dated snapshot names (`gpt-5-2025-08-07`,
 * `claude-sonnet-4-5-20250929`) while price lists name the alias, so the date is tried off too.
 */
export function findPrice(pricing: PricingTable, model: string): ModelPrice | undefined {
  if (Object.hasOwn(pricing, model)) {
    return pricing[model];
  }
  const alias = model.replace(/-(?:\d{4}-\d{2}-\d{2}|\d{8})$/, '');
  return alias !== model && Object.hasOwn(pricing, alias) ? pricing[alias] : undefined;
}

export function costOf(usage: UsageCount, pricing: PricingTable, model: string): CostResult {
  if (usage.costUsd !== undefined && Number.isFinite(usage.costUsd)) {
    return { cost: usage.costUsd, unpriced: false };
  }
  const price = findPrice(pricing, model);
  if (!price) {
    return { cost: 0, unpriced: true };
  }
  const input = Math.max(0, usage.inputTokens);
  const cached = Math.min(input, Math.max(0, usage.cachedInputTokens ?? 0));
  const written = Math.min(input - cached, Math.max(0, usage.cacheWriteInputTokens ?? 0));
  const uncached = input - cached - written;
  const micro =
    uncached * price.input +
    cached * (price.cachedInput ?? price.input) +
    written * (price.cacheWrite ?? price.input) +
    Math.max(0, usage.outputTokens) * price.output;
  // Rounded to a billionth of a cent so sums of many calls do not collect float noise.
  return { cost: Math.round((micro / 1_000_000) * 1e11) / 1e11, unpriced: false };
}

// ---- base URL -----------------------------------------------------------------------------------

/** `KEYWARD_PROVIDER_<ID>_BASE_URL`, the id upper-cased with dashes as underscores. */
export function baseUrlVariable(id: string): string {
  return `KEYWARD_PROVIDER_${id.toUpperCase().replace(/-/g, '_')}_BASE_URL`;
}

/** The environment override when set, else `defaultUrl`; without a trailing slash either way. */
export function resolveBaseUrl(id: string, defaultUrl: string): string {
  const override = process.env[baseUrlVariable(id)]?.trim();
  return (override ? override : defaultUrl).replace(/\/+$/, '');
}

/** `joinUrl('https://x/v1', '/models')` keeps the `/v1` that `new URL('/models', base)` drops. */
export function joinUrl(baseUrl: string, path: string): URL {
  return new URL(`${baseUrl.replace(/\/+$/, '')}/${path.replace(/^\/+/, '')}`);
}

// ---- headers ------------------------------------------------------------------------------------

export function readHeader(headers: HeadersLike, name: string): string | undefined {
  if (headers instanceof Headers) {
    return headers.get(name) ?? undefined;
  }
  const wanted = name.toLowerCase();
  for (const [key, value] of Object.entries(headers)) {
    if (key.toLowerCase() === wanted && value !== undefined) {
      return Array.isArray(value) ? value.join(', ') : String(value);
    }
  }
  return undefined;
}

/** Sets a header, replacing any spelling of it already there (`authorization` vs `Authorization`). */
export function setHeader(headers: Record<string, string>, name: string, value: string): void {
  removeHeader(headers, name);
  headers[name] = value;
}

export function removeHeader(headers: Record<string, string>, name: string): void {
  const wanted = name.toLowerCase();
  for (const key of Object.keys(headers)) {
    if (key.toLowerCase() === wanted) {
      delete headers[key];
    }
  }
}

export function readNumberHeader(headers: HeadersLike, name: string): number | undefined {
  const value = readHeader(headers, name);
  if (value === undefined || value.trim() === '') {
    return undefined;
  }
  const number = Number(value);
  return Number.isFinite(number) ? number : undefined;
}

const DURATION_UNITS_MS: Record<string, number> = {
  ns: 1e-6,
  us: 1e-3,
  µs: 1e-3,
  ms: 1,
  s: 1000,
  m: 60_000,
  h: 3_600_000,
};

/**
 * Go-style durations as OpenAI and Groq print their resets: `12ms`, `6s`, `1m30s`, `2m59.56s`.
 * A bare number is taken as seconds. Undefined when the text is not a duration.
 */
export function parseDuration(text: string): number | undefined {
  const value = text.trim();
  if (/^\d+(?:\.\d+)?$/.test(value)) {
    return Number(value) * 1000;
  }
  const part = /(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)/y;
  let total = 0;
  let index = 0;
  while (index < value.length) {
    part.lastIndex = index;
    const match = part.exec(value);
    if (!match) {
      return undefined;
    }
    total += Number(match[1]) * DURATION_UNITS_MS[match[2]];
    index = part.lastIndex;
  }
  return index > 0 ? Math.round(total) : undefined;
}

/** `retry-after`: seconds, or an HTTP date. */
export function parseRetryAfter(value: string | undefined, now = Date.now()): number | undefined {
  if (value === undefined || value.trim() === '') {
    return undefined;
  }
  if (/^\s*\d+(?:\.\d+)?\s*$/.test(value)) {
    return Math.round(Number(value) * 1000);
  }
  const date = Date.parse(value);
  return Number.isNaN(date) ? undefined : Math.max(0, date - now);
}

/** An RFC 3339 time (Anthropic's resets) as milliseconds from `now`. */
export function millisecondsUntil(value: string | undefined, now = Date.now()): number | undefined {
  if (value === undefined) {
    return undefined;
  }
  const date = Date.parse(value);
  return Number.isNaN(date) ? undefined : Math.max(0, date - now);
}

/** `x-ratelimit-{limit,remaining,reset}-{requests,tokens}` as OpenAI, Groq and others send them. */
export function openAiStyleRateLimits(headers: HeadersLike): RateLimitSnapshot {
  const snapshot: RateLimitSnapshot = {};
  for (const kind of ['requests', 'tokens'] as const) {
    const window = compactWindow({
      limit: readNumberHeader(headers, `x-ratelimit-limit-${kind}`),
      remaining: readNumberHeader(headers, `x-ratelimit-remaining-${kind}`),
      resetMs: optionalDuration(readHeader(headers, `x-ratelimit-reset-${kind}`)),
    });
    if (window) {
      snapshot[kind] = window;
    }
  }
  const retryAfterMs = parseRetryAfter(readHeader(headers, 'retry-after'));
  if (retryAfterMs !== undefined) {
    snapshot.retryAfterMs = retryAfterMs;
  }
  return snapshot;
}

function optionalDuration(value: string | undefined): number | undefined {
  return value === undefined ? undefined : parseDuration(value);
}

/** Drops unset fields; undefined when nothing was set. */
export function compactWindow(window: RateLimitWindow): RateLimitWindow | undefined {
  const compact: RateLimitWindow = {};
  for (const key of ['limit', 'remaining', 'resetMs'] as const) {
    if (window[key] !== undefined) {
      compact[key] = window[key];
    }
  }
  return Object.keys(compact).length > 0 ? compact : undefined;
}

// ---- secrets ------------------------------------------------------------------------------------

/**
 * Known key shapes, whole or masked (`sk-proj-****abcd`), and any long token-like run. Providers
 * echo keys in errors ("Incorrect API key provided: sk-proj-…abcd"); none of it may reach a log.
 */
const SECRET_PATTERNS: RegExp[] = [
  /\b(?:sk|gsk|rk|pk|xai)[-_][A-Za-z0-9*_-]{6,}/g,
  /[A-Za-z0-9_-]*\*{3,}[A-Za-z0-9_*-]*/g,
  /\b[A-Za-z0-9_-]{32,}\b/g,
];

export function redactSecrets(text: string, maxLength = 500): string {
  let redacted = text;
  for (const pattern of SECRET_PATTERNS) {
    redacted = redacted.replace(pattern, '[redacted]');
  }
  return redacted.length > maxLength ? `${redacted.slice(0, maxLength)}…` : redacted;
}

/** Replaces every occurrence of a known secret; for text that might quote the key exactly. */
export function withoutSecret(text: string, secret: string): string {
  return secret.length > 0 ? text.split(secret).join('[redacted]') : text;
}

// ---- JSON ---------------------------------------------------------------------------------------

export function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

export function asRecord(value: unknown): Record<string, unknown> {
  return isRecord(value) ? value : {};
}

export function asNumber(value: unknown): number | undefined {
  if (typeof value === 'number' && Number.isFinite(value)) {
    return value;
  }
  if (typeof value === 'string' && value.trim() !== '' && Number.isFinite(Number(value))) {
    return Number(value);
  }
  return undefined;
}

export function asString(value: unknown): string | undefined {
  return typeof value === 'string' ? value : undefined;
}

export function parseJson(text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return undefined;
  }
}

/**
 * Reads the `usage` object of the OpenAI dialect (OpenAI, Groq, OpenRouter): `prompt_tokens`
 * already include `prompt_tokens_details.cached_tokens`.
 */
export function openAiStyleUsage(usage: unknown, model?: string): UsageCount | undefined {
  if (!isRecord(usage)) {
    return undefined;
  }
  const input = asNumber(usage.prompt_tokens);
  const output = asNumber(usage.completion_tokens) ?? 0;
  if (input === undefined) {
    return undefined;
  }
  const count: UsageCount = {
    inputTokens: input,
    outputTokens: output,
    totalTokens: asNumber(usage.total_tokens) ?? input + output,
  };
  const cached = asNumber(asRecord(usage.prompt_tokens_details).cached_tokens);
  if (cached !== undefined && cached > 0) {
    count.cachedInputTokens = cached;
  }
  const cost = asNumber(usage.cost);
  if (cost !== undefined) {
    count.costUsd = cost;
  }
  if (model !== undefined) {
    count.model = model;
  }
  return count;
}

// ---- streaming ----------------------------------------------------------------------------------

/**
 * A StreamUsageTap over an SSE stream: `onEvent` sees every complete event and keeps what it
 * needs in its closure; `result` reports it. Events are parsed incrementally, see SseReader.
 */
export function sseUsageTap(onEvent: (event: SseEvent) => void, result: () => UsageCount | undefined): StreamUsageTap {
  const reader = new SseReader(onEvent);
  return {
    push: (chunk) => reader.push(chunk),
    result,
  };
}

/**
 * The tap for providers that report a stream's usage whole in one event (OpenAI-compatible
 * APIs): events without a `"usage"` key — the bulk of a stream — are never parsed, and the last
 * usage found wins.
 */
export function usageEventTap(usageOf: (json: unknown) => UsageCount | undefined): StreamUsageTap {
  let usage: UsageCount | undefined;
  return sseUsageTap(
    (event) => {
      if (event.data.includes('"usage"')) usage = usageOf(parseJson(event.data)) ?? usage;
    },
    () => usage,
  );
}

// ---- HTTP ---------------------------------------------------------------------------------------

const DEFAULT_TIMEOUT_MS = 10_000;

export interface ProviderResponse {
  status: number;
  headers: Headers;
  /** Parsed JSON, the raw text when it was not JSON, undefined when empty. */
  body: unknown;
}

/** A call that got no usable HTTP answer. Its message never contains the request's headers. */
export class ProviderCallError extends Error {
  constructor(
    readonly type: 'timeout' | 'provider_error',
    message: string,
  ) {
    super(message);
    this.name = 'ProviderCallError';
  }
}

/**
 * A provider answered a management call (provisionKey, retireKey) with an error. The message is
 * the classified, redacted provider text.
 */
export class ProviderRequestError extends Error {
  constructor(
    readonly status: number,
    readonly classified: ClassifiedError,
    action: string,
  ) {
    super(
      `${action} failed: HTTP ${status} (${classified.type})${classified.message ? `: ${classified.message}` : ''}`,
    );
    this.name = 'ProviderRequestError';
  }
}

export async function sendRequest(
  request: OutgoingRequest,
  body: unknown,
  options: CallOptions = {},
): Promise<ProviderResponse> {
  const fetchImpl = options.fetch ?? fetch;
  const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const headers: Record<string, string> = { accept: 'application/json', ...request.headers };
  if (body !== undefined) {
    setHeader(headers, 'content-type', 'application/json');
  }
  const where = `${request.method} ${request.url.origin}${request.url.pathname}`;
  try {
    const response = await fetchImpl(request.url, {
      method: request.method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: AbortSignal.timeout(timeoutMs),
    });
    const text = await response.text();
    return {
      status: response.status,
      headers: response.headers,
      body: text.length === 0 ? undefined : (parseJson(text) ?? text),
    };
  } catch (error: unknown) {
    // Only the method and path go into the message: query strings may carry a key. Errors are
    // read by shape, not instanceof: fetch's DOMException may come from another realm.
    const name = isRecord(error) ? error.name : undefined;
    if (name === 'TimeoutError' || name === 'AbortError') {
      throw new ProviderCallError('timeout', `${where}: no answer within ${timeoutMs} ms`);
    }
    const cause = isRecord(error) && isRecord(error.cause) ? error.cause : error;
    const detail =
      isRecord(cause) && typeof cause.message === 'string' ? redactSecrets(cause.message, 200) : 'network error';
    throw new ProviderCallError('provider_error', `${where}: ${detail}`);
  }
}

/**
 * The usual verify: one authorized GET; 2xx proves the key. Answers that prove the key was
 * accepted but refuse the call (rate limited, out of credit, missing scope) still say valid, with
 * the refusal as `reason`; a caller that only deactivates on `errorType: 'invalid_key'` is safe.
 */
export async function verifyWithRequest(
  plugin: Pick<ProviderPlugin, 'authorize' | 'classifyError' | 'rateLimitsFrom'>,
  request: OutgoingRequest,
  secret: string,
  organizationId: string | undefined,
  options: CallOptions | undefined,
  detailsOf: (response: ProviderResponse) => VerifyAPIKeyResponse['details'],
): Promise<VerifyAPIKeyResponse> {
  let response: ProviderResponse;
  try {
    response = await sendRequest(plugin.authorize(request, secret, organizationId), undefined, options);
  } catch (error: unknown) {
    if (error instanceof ProviderCallError) {
      return { valid: false, errorType: error.type, reason: `Could not verify: ${error.message}` };
    }
    throw error;
  }
  if (response.status >= 200 && response.status < 300) {
    const details = detailsOf(response);
    return details && Object.keys(details).length > 0 ? { valid: true, details } : { valid: true };
  }
  const classified = plugin.classifyError(response.status, response.headers, response.body);
  const message = withoutSecret(classified.message ?? `HTTP ${response.status}`, secret);
  switch (classified.type) {
    case 'rate_limited':
    case 'out_of_credit':
      return { valid: true, errorType: classified.type, reason: message };
    case 'bad_request':
      // 400/404 on a GET we built means our request is wrong, not the key; 401/403 here means
      // the key was recognised but lacks a permission.
      return response.status === 401 || response.status === 403
        ? { valid: true, errorType: classified.type, reason: `Key is restricted: ${message}` }
        : { valid: false, errorType: classified.type, reason: message };
    default:
      return { valid: false, errorType: classified.type, reason: message };
  }
}

/** Limits for VerifyAPIKeyResponse from a rate-limit snapshot, when it says anything. */
export function limitsFromSnapshot(snapshot: RateLimitSnapshot): NonNullable<VerifyAPIKeyResponse['details']> {
  const rateLimit = snapshot.requests?.limit;
  const quotaLimit = snapshot.tokens?.limit;
  if (rateLimit === undefined && quotaLimit === undefined) {
    return {};
  }
  return {
    limits: { rateLimit: rateLimit ?? 0, quotaLimit: quotaLimit ?? 0 },
    rateLimits: snapshot,
  };
}

/**
 * The error type a status alone implies, for providers whose bodies add nothing: plugins refine
 * it with the body's error code.
 */
export function errorTypeOfStatus(status: number): ProviderErrorType {
  if (status === 401) {
    return 'invalid_key';
  }
  if (status === 402) {
    return 'out_of_credit';
  }
  if (status === 408 || status === 504) {
    return 'timeout';
  }
  if (status === 429) {
    return 'rate_limited';
  }
  return status >= 500 ? 'provider_error' : 'bad_request';
}

/** The `error.message` of an error body (or the body itself when it is text), redacted. */
export function errorMessageOf(body: unknown): string | undefined {
  const error = isRecord(body) ? body.error : undefined;
  const message = isRecord(error)
    ? asString(error.message)
    : typeof error === 'string'
      ? error
      : typeof body === 'string'
        ? body
        : undefined;
  return message === undefined || message.trim() === '' ? undefined : redactSecrets(message.trim());
}

/** A key-format check from a pattern; `expected` describes the pattern in words. */
export function checkFormat(secret: string, pattern: RegExp, expected: string): KeyFormatCheck {
  return pattern.test(secret) ? { ok: true } : { ok: false, expected };
}
