import type { ProviderEndpoint } from '../../src/plugin-system/provider-plugin';

/**
 * Anthropic's public API, relative to its origin. The admin API (`/v1/organizations/...`) is
 * deliberately absent. Message batches are billed when they run, so creating one is `read`.
 */
export const ANTHROPIC_ROUTES: ProviderEndpoint[] = [
  { method: 'POST', path: '/v1/messages', group: 'chat' },
  { method: 'POST', path: '/v1/messages/count_tokens', group: 'chat', usage: 'read', model: 'json' },

  { method: 'POST', path: '/v1/messages/batches', group: 'batches', usage: 'read', model: 'none' },
  { method: 'GET', path: '/v1/messages/batches', group: 'batches' },
  { method: 'GET', path: '/v1/messages/batches/{batch_id}', group: 'batches' },
  { method: 'DELETE', path: '/v1/messages/batches/{batch_id}', group: 'batches' },
  { method: 'POST', path: '/v1/messages/batches/{batch_id}/cancel', group: 'batches', usage: 'read', model: 'none' },
  { method: 'GET', path: '/v1/messages/batches/{batch_id}/results', group: 'batches' },

  { method: 'GET', path: '/v1/models', group: 'models' },
  { method: 'GET', path: '/v1/models/{model_id}', group: 'models' },

  { method: 'GET', path: '/v1/files', group: 'files' },
  { method: 'POST', path: '/v1/files', group: 'files', usage: 'read', model: 'none' },
  { method: 'GET', path: '/v1/files/{file_id}', group: 'files' },
  { method: 'DELETE', path: '/v1/files/{file_id}', group: 'files' },
  { method: 'GET', path: '/v1/files/{file_id}/content', group: 'files' },
];
