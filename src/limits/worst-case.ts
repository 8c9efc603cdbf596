import { findPrice, isRecord, type PricingTable } from '../plugin-system/provider-plugin';
import type { WorstCase } from './limits.types';

/** Estimated characters per token: about 4 for English text with every tokenizer in use. */
export const CHARS_PER_TOKEN = 4;
/**
 * What one image counts as input, whatever its size: above what OpenAI (at most 1,105 tokens at
 * high detail for the 4o family, 1,536 for the patch-based minis) and Anthropic (about 1,600 for
 * the largest image it accepts unscaled) charge for one image.
 */
export const IMAGE_TOKENS = 2_000;

const IMAGE_PART_TYPES = new Set(['image_url', 'input_image', 'image']);
/** Endpoints that answer without generated tokens. */
const NO_OUTPUT = /(?:^|\/)(?:embeddings|moderations)$/;

export interface WorstCaseInput {
  /** The parsed JSON body; anything else (text, a multipart form) is counted from `rawLength`. */
  body: unknown;
  /** Length of the raw body in bytes (used when `body` is not a JSON object). */
  rawLength?: number;
  /** The upstream path, e.g. `/v1/chat/completions`; embeddings and moderations have no output. */
  endpoint?: string;
  model: string | null;
  pricing?: PricingTable;
  /** The model's longest answer, from the plugin (`maxOutputTokens`), when it knows. */
  modelMaxOutputTokens?: number;
  /** KEYWARD_DEFAULT_MAX_OUTPUT_TOKENS: the longest answer assumed when nothing else says. */
  defaultMaxOutputTokens: number;
  /** KEYWARD_UNPRICED_USD_PER_MILLION_TOKENS: price assumed for a model without one, if set. */
  unpricedUsdPerMillionTokens?: number;
}

/** Whole, positive numbers only; anything else in the body is ignored (the provider refuses it). */
const positiveInt = (value: unknown): number | undefined =>
  typeof value === 'number' && Number.isFinite(value) && value > 0 ? Math.ceil(value) : undefined;

/**
 * Input tokens of a JSON body: its serialised length / 4, rounded up (the JSON syntax around the
 * text makes this an over-estimate, which is the safe side), with each image part replaced by a
 * fixed IMAGE_TOKENS whatever its encoding. Files and documents (PDF as base64 and the like) are
 * counted by their characters too, which is far above what a provider charges for them.
 */
export function estimateInputTokens(body: unknown, rawLength = 0): number {
  if (!isRecord(body) && !Array.isArray(body)) return Math.ceil(rawLength / CHARS_PER_TOKEN);
  let images = 0;
  const text = JSON.stringify(body, (_key, value: unknown) => {
    if (isRecord(value) && typeof value.type === 'string' && IMAGE_PART_TYPES.has(value.type)) {
      images += 1;
      return null;
    }
    return value;
  });
  return Math.ceil(text.length / CHARS_PER_TOKEN) + images * IMAGE_TOKENS;
}

/**
 * Output tokens the answer may have: the client's own cap (`max_tokens`, `max_completion_tokens`,
 * `max_output_tokens`; the largest if several), else the model's maximum from the plugin, else
 * the configured default; times `n` when several choices are asked for.
 */
export function estimateOutputTokens(
  input: Pick<WorstCaseInput, 'body' | 'endpoint' | 'modelMaxOutputTokens' | 'defaultMaxOutputTokens'>,
): number {
  if (input.endpoint && NO_OUTPUT.test(input.endpoint)) return 0;
  const body = isRecord(input.body) ? input.body : {};
  const caps = [body.max_tokens, body.max_completion_tokens, body.max_output_tokens]
    .map(positiveInt)
    .filter((n): n is number => n !== undefined);
  const cap =
    caps.length > 0 ? Math.max(...caps) : (positiveInt(input.modelMaxOutputTokens) ?? input.defaultMaxOutputTokens);
  const choices = positiveInt(body.n) ?? 1;
  return cap * choices;
}

/**
 * The most one request can use: input estimated from the body, output at its cap, priced at the
 * model's highest input price (cache writes cost more than plain input at Anthropic) and its
 * output price. A model without a price is priced at `unpricedUsdPerMillionTokens` when that is
 * configured; otherwise its USD is 0 and `unpriced` is true, and LimitsService refuses it
 * wherever a USD limit or budget applies (a cost it cannot bound is not admitted). Pure.
 */
export function worstCase(input: WorstCaseInput): WorstCase {
  const inputTokens = estimateInputTokens(input.body, input.rawLength);
  const outputTokens = estimateOutputTokens(input);
  const price = input.model && input.pricing ? findPrice(input.pricing, input.model) : undefined;
  let usd = 0;
  let unpriced = false;
  if (price) {
    const inputPrice = Math.max(price.input, price.cacheWrite ?? 0, price.cachedInput ?? 0);
    usd = (inputTokens * inputPrice + outputTokens * price.output) / 1_000_000;
  } else if (input.unpricedUsdPerMillionTokens !== undefined) {
    usd = ((inputTokens + outputTokens) * input.unpricedUsdPerMillionTokens) / 1_000_000;
  } else {
    unpriced = true;
  }
  return { tokens: inputTokens + outputTokens, usd: roundUp(usd), requests: 1, unpriced };
}

/** USD to 1e-9, upwards, so that float noise never makes a worst case smaller than it is. */
const roundUp = (usd: number) => (usd <= 0 ? 0 : Math.ceil(usd * 1e9 - 1e-6) / 1e9);
