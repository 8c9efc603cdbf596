/** Classifying provider errors and checking key formats: the shared defaults plugins refine. */
import type { KeyFormatCheck, ProviderErrorType } from './contract';
import { redactSecrets } from './secrets';
import { asString, isRecord } from './values';

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
