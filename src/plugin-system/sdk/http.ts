/** Calling a provider: base URLs, one JSON request with a timeout, and the usual verify. */
import type { ProviderPlugin } from '../provider-plugin';
import type {
  CallOptions,
  ClassifiedError,
  OutgoingRequest,
  RateLimitSnapshot,
  VerifyAPIKeyResponse,
} from './contract';
import { setHeader } from './headers';
import { redactSecrets, withoutSecret } from './secrets';
import { isRecord, parseJson } from './values';

// ---- base URL -----------------------------------------------------------------------------------

/** `KEYWARD_PROVIDER_<ID>_BASE_URL`, the id upper-cased with dashes as underscores. */
export function baseUrlVariable(id: string): string {
  return `KEYWARD_PROVIDER_${id.toUpperCase().replace(/-/g, '_')}_BASE_URL`;
}

const variables = new Map<string, string>();

/** The environment override when set, else `defaultUrl`; without a trailing slash either way. */
export function resolveBaseUrl(id: string, defaultUrl: string): string {
  // Read on every gateway call (tests change it between apps): the variable's name is built once.
  let variable = variables.get(id);
  if (variable === undefined) variables.set(id, (variable = baseUrlVariable(id)));
  const override = process.env[variable]?.trim();
  const url = override ? override : defaultUrl;
  // The regular expression only when there is a slash to drop.
  return url.endsWith('/') ? url.replace(/\/+$/, '') : url;
}

/** `joinUrl('https://x/v1', '/models')` keeps the `/v1` that `new URL('/models', base)` drops. */
export function joinUrl(baseUrl: string, path: string): URL {
  return new URL(`${baseUrl.replace(/\/+$/, '')}/${path.replace(/^\/+/, '')}`);
}

// ---- requests -----------------------------------------------------------------------------------

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
