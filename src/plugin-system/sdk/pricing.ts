/** What a call costs: the provider's own figure when it reports one, else the pricing table. */
import type { ModelPrice, PricingTable, UsageCount } from './contract';

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
