/**
 * The contract's data types: what a plugin declares (ProviderConfig, pricing) and what its
 * members take and return. The ProviderPlugin interface itself is in `../provider-plugin.ts`.
 */
import type { ProviderEndpoint } from '../endpoints';
import type { SseEvent } from '../sse';

/** The spec's ProviderConfig (docs/spec api-key-management) plus the plugin's id and base URL. */
export interface ProviderConfig {
  /** Stable identifier, `^[a-z][a-z0-9-]*$`; the manifest's `keyward.id`. */
  id: string;
  name: string;
  apiVersion: string;
  /** Paths, relative to `baseUrl`, that the gateway may forward to this provider (the spec's list). */
  endpoints: string[];
  /**
   * Method + path templates the gateway forwards, grouped for token scopes (see endpoints.ts).
   * Without it the gateway derives routes from `endpoints` (`routesFromPaths`).
   */
  routes?: ProviderEndpoint[];
  /**
   * Client request headers (lower case) forwarded besides the common ones (`accept`,
   * `content-type`, `user-agent`, `idempotency-key`, `x-stainless-*`), e.g. `anthropic-version`.
   * Every other client header is dropped: credentials and account scoping belong to the stored key.
   */
  forwardHeaders?: string[];
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
  /**
   * Optional: a tap over SSE that can take events already split. The gateway splits every
   * uncompressed SSE answer anyway (for its own needs); when a tap has `event`, it gets each
   * event with data there, and `push` is not called — the stream is decoded once, not twice.
   * `sseUsageTap` provides it.
   */
  event?(event: SseEvent): void;
  /**
   * The stream is over: reads a last event that had no closing blank line and, for a tap over a
   * compressed stream (decodedTap), the rest of the decoded bytes. Await it before the final
   * `result()`. Optional, so taps written before it existed still fit.
   */
  end?(): void | Promise<void>;
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
