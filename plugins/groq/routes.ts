import type { ProviderEndpoint } from '../../src/plugin-system/provider-plugin';

/** Groq's OpenAI-compatible API, relative to `/openai/v1`. */
export const GROQ_ROUTES: ProviderEndpoint[] = [
  { method: 'POST', path: '/chat/completions', group: 'chat' },
  { method: 'POST', path: '/responses', group: 'responses' },
  { method: 'POST', path: '/embeddings', group: 'embeddings' },
  { method: 'POST', path: '/audio/transcriptions', group: 'audio', model: 'multipart' },
  { method: 'POST', path: '/audio/translations', group: 'audio', model: 'multipart' },
  { method: 'POST', path: '/audio/speech', group: 'audio' },
  { method: 'GET', path: '/models', group: 'models' },
  { method: 'GET', path: '/models/{model}', group: 'models' },

  { method: 'GET', path: '/files', group: 'files' },
  { method: 'POST', path: '/files', group: 'files', usage: 'read', model: 'none' },
  { method: 'GET', path: '/files/{file_id}', group: 'files' },
  { method: 'DELETE', path: '/files/{file_id}', group: 'files' },
  { method: 'GET', path: '/files/{file_id}/content', group: 'files' },

  { method: 'POST', path: '/batches', group: 'batches', usage: 'read', model: 'none' },
  { method: 'GET', path: '/batches', group: 'batches' },
  { method: 'GET', path: '/batches/{batch_id}', group: 'batches' },
  { method: 'POST', path: '/batches/{batch_id}/cancel', group: 'batches', usage: 'read', model: 'none' },
];
