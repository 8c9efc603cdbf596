import type { ProviderEndpoint } from '../../src/plugin-system/provider-plugin';

/**
 * OpenRouter's inference API, relative to `/api/v1`. Key management (`/keys`), the key's own
 * limits (`/key`) and credits are deliberately absent: they belong to the stored key's owner.
 */
export const OPENROUTER_ROUTES: ProviderEndpoint[] = [
  { method: 'POST', path: '/chat/completions', group: 'chat' },
  { method: 'POST', path: '/completions', group: 'completions' },
  { method: 'POST', path: '/responses', group: 'responses' },
  { method: 'POST', path: '/embeddings', group: 'embeddings' },
  { method: 'GET', path: '/models', group: 'models' },
  { method: 'GET', path: '/models/{author}/{slug}/endpoints', group: 'models' },
  { method: 'GET', path: '/providers', group: 'models' },
  { method: 'GET', path: '/generation', group: 'chat', usage: 'read' },
];
