import { AnthropicFakeProvider } from './anthropic.fake';
import type { FakeProvider, FakeProviderId, FakeProviderOptions } from './fake-provider';
import { GroqFakeProvider } from './groq.fake';
import { OpenAiFakeProvider } from './openai.fake';
import { OpenRouterFakeProvider } from './openrouter.fake';

export * from './fake-provider';
export { AnthropicFakeProvider, generateAnthropicKey } from './anthropic.fake';
export { GroqFakeProvider, generateGroqKey } from './groq.fake';
export { OpenAiFakeProvider, generateOpenAiKey } from './openai.fake';
export { OpenRouterFakeProvider, generateOpenRouterKey } from './openrouter.fake';

interface FakeProviders {
  openai: OpenAiFakeProvider;
  anthropic: AnthropicFakeProvider;
  groq: GroqFakeProvider;
  openrouter: OpenRouterFakeProvider;
}

/**
 * Starts a fake of `id` on 127.0.0.1 (a random port unless `options.port`). Point the plugin at
 * `fake.baseUrl`, e.g. `KEYWARD_PROVIDER_OPENAI_BASE_URL=fake.baseUrl`; `close()` it afterwards.
 */
export function startFakeProvider<Id extends FakeProviderId>(
  id: Id,
  options: FakeProviderOptions = {},
): Promise<FakeProviders[Id]> {
  const starters: { [K in FakeProviderId]: () => Promise<FakeProviders[K]> } = {
    openai: () => OpenAiFakeProvider.start(options),
    anthropic: () => AnthropicFakeProvider.start(options),
    groq: () => GroqFakeProvider.start(options),
    openrouter: () => OpenRouterFakeProvider.start(options),
  };
  return starters[id]();
}

/** Starts one fake per id, e.g. for an e2e suite that talks to all four. */
export async function startFakeProviders(
  ids: readonly FakeProviderId[] = ['openai', 'anthropic', 'groq', 'openrouter'],
  options: FakeProviderOptions = {},
): Promise<FakeProvider[]> {
  return Promise.all(ids.map((id) => startFakeProvider(id, options)));
}
