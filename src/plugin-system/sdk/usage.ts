/** Token counts in the shapes the OpenAI dialect uses; provider-specific shapes live in their plugins. */
import type { UsageCount } from './contract';
import { asNumber, asRecord, isRecord } from './values';

const WHITESPACE = new Set([' ', '\t', '\n', '\r']);

/**
 * Whether an event's JSON text has a `"usage"` key holding an object — checked on the text, so
 * that the chunks of a stream that carry none are never parsed. OpenAI marks every chunk
 * `"usage":null` once usage was asked for, so "contains usage" alone would parse them all.
 * Escaped quotes inside strings (`\"usage\"`) never match; a string value "usage" is skipped.
 */
export function hasUsageObject(json: string): boolean {
  for (let at = json.indexOf('"usage"'); at !== -1; at = json.indexOf('"usage"', at + 7)) {
    let i = at + 7;
    while (WHITESPACE.has(json[i])) i++;
    if (json[i] !== ':') continue;
    i++;
    while (WHITESPACE.has(json[i])) i++;
    if (json[i] === '{') return true;
  }
  return false;
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

/**
 * The `usage` of the Responses API shape (`input_tokens`, `output_tokens`, with
 * `input_tokens_details.cached_tokens`), which OpenAI also uses for gpt-image and gpt-4o
 * transcriptions, and Groq and OpenRouter for their Responses APIs. OpenRouter adds `cost`.
 */
export function inputOutputUsage(usage: unknown, model?: string): UsageCount | undefined {
  if (!isRecord(usage)) {
    return undefined;
  }
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
  const cost = asNumber(usage.cost);
  if (cost !== undefined) {
    count.costUsd = cost;
  }
  if (model !== undefined) {
    count.model = model;
  }
  return count;
}

/** A request that used no tokens: a `read` route, a moderation, a batch created. */
export function zeroUsage(model?: string): UsageCount {
  return model === undefined
    ? { inputTokens: 0, outputTokens: 0, totalTokens: 0 }
    : { inputTokens: 0, outputTokens: 0, totalTokens: 0, model };
}
