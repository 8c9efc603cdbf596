/**
 * The public entry point of Keyward's plugin SDK: the contract between Keyward and a provider
 * plugin, and the helpers every plugin needs. Plugin authors import it as `keyward/plugin-sdk`
 * (`sdk/index.ts`); code in this repository imports this file. The pieces live by role:
 *
 * - `sdk/contract.ts` — the data types (ProviderConfig, UsageCount, StreamUsageTap, …);
 * - `sdk/pricing.ts` — costOf, findPrice;
 * - `sdk/headers.ts` — readHeader, setHeader, rate-limit header parsing;
 * - `sdk/usage.ts` — usage in the shapes of the OpenAI dialect;
 * - `sdk/stream-taps.ts` — stream taps over the SSE decoder, decodedTap for compressed bodies;
 * - `sdk/http.ts` — base URLs, sendRequest, verifyWithRequest, ProviderRequestError;
 * - `sdk/errors.ts`, `sdk/secrets.ts`, `sdk/values.ts` — error classification, redaction, JSON;
 * - `sse.ts` — the byte-level SSE decoder; `endpoints.ts` — route tables and path checks.
 *
 * None of it imports anything but Node's own modules (no Nest), so a plugin written outside this
 * repository can depend on it; with `import type` for the contract it needs nothing at run time.
 *
 * Secrets: no helper ever puts a key into an error message, and `redactSecrets` is applied to
 * every piece of provider text that ends up in a `reason` or `message`, because providers echo
 * (partly masked) keys back in their error bodies.
 */
import type { ProviderEndpoint } from './endpoints';
import type {
  CallOptions,
  ClassifiedError,
  HeadersLike,
  KeyFormatCheck,
  OutgoingRequest,
  PreparedStreamingRequest,
  PricingTable,
  ProviderConfig,
  ProvisionedKey,
  ProvisionOptions,
  RateLimitSnapshot,
  RetireOptions,
  StreamUsageTap,
  UsageCount,
  VerifyAPIKeyResponse,
} from './sdk/contract';

export * from './endpoints';
export * from './sse';
export * from './sdk/contract';
export * from './sdk/errors';
export * from './sdk/headers';
export * from './sdk/http';
export * from './sdk/pricing';
export * from './sdk/secrets';
export * from './sdk/stream-taps';
export * from './sdk/usage';
export * from './sdk/values';

// ---- the contract -------------------------------------------------------------------------------

export interface ProviderPlugin {
  readonly config: ProviderConfig;
  readonly pricing: PricingTable;
  /** Applies the provider's auth method to a request bound for it; returns the same request. */
  authorize(request: OutgoingRequest, secret: string, organizationId?: string): OutgoingRequest;
  /** The cheapest real call that proves the key works. Never throws for provider answers. */
  verify(secret: string, organizationId?: string, options?: CallOptions): Promise<VerifyAPIKeyResponse>;
  /**
   * Tokens from a JSON answer; undefined when it carries no usage. `endpoint` is the route the
   * gateway matched: a `read` route counts zero tokens even when the body repeats a usage.
   */
  usageFrom(json: unknown, endpoint?: ProviderEndpoint): UsageCount | undefined;
  /** A tap for one streamed answer of `endpoint` (any SSE endpoint of the plugin when absent). */
  createStreamTap(endpoint?: ProviderEndpoint): StreamUsageTap;
  /**
   * Usage that only the request shows, for answers that carry none (OpenAI speech: the input's
   * characters). The gateway uses it when the answer gave no usage.
   */
  usageFromRequest?(body: unknown, endpoint?: ProviderEndpoint): UsageCount | undefined;
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
  /**
   * The longest answer `model` can give, in tokens; undefined when unknown. Limits reserve this
   * as a request's output when the request sets no cap of its own.
   */
  maxOutputTokens?(model: string): number | undefined;
}

/** Identity: gives a plugin object literal its type without widening. */
export function definePlugin<T extends ProviderPlugin>(plugin: T): T {
  return plugin;
}
