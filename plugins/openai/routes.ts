import type { ProviderEndpoint } from '../../src/plugin-system/provider-plugin';

/**
 * OpenAI's public API groups, relative to `/v1`. Organisation, project, admin-key, usage and
 * billing APIs (`/organization/...`) are deliberately absent: a token never reaches them.
 * Batch and fine-tuning jobs are billed when they run, not when they are created, so their calls
 * are `read` (a request with zero tokens).
 */
export const OPENAI_ROUTES: ProviderEndpoint[] = [
  { method: 'POST', path: '/chat/completions', group: 'chat' },
  { method: 'GET', path: '/chat/completions', group: 'chat', usage: 'read' },
  { method: 'GET', path: '/chat/completions/{completion_id}', group: 'chat', usage: 'read' },
  { method: 'POST', path: '/chat/completions/{completion_id}', group: 'chat', usage: 'read', model: 'none' },
  { method: 'DELETE', path: '/chat/completions/{completion_id}', group: 'chat', usage: 'read' },
  { method: 'GET', path: '/chat/completions/{completion_id}/messages', group: 'chat', usage: 'read' },

  { method: 'POST', path: '/responses', group: 'responses' },
  { method: 'POST', path: '/responses/input_tokens', group: 'responses', usage: 'read', model: 'json' },
  { method: 'GET', path: '/responses/{response_id}', group: 'responses', usage: 'read' },
  { method: 'DELETE', path: '/responses/{response_id}', group: 'responses', usage: 'read' },
  { method: 'POST', path: '/responses/{response_id}/cancel', group: 'responses', usage: 'read', model: 'none' },
  { method: 'GET', path: '/responses/{response_id}/input_items', group: 'responses', usage: 'read' },
  // Conversations hold the state the Responses API continues from; reading or changing them is free.
  { method: 'POST', path: '/conversations', group: 'responses', usage: 'read', model: 'none' },
  { method: 'GET', path: '/conversations/{conversation_id}', group: 'responses', usage: 'read' },
  { method: 'POST', path: '/conversations/{conversation_id}', group: 'responses', usage: 'read', model: 'none' },
  { method: 'DELETE', path: '/conversations/{conversation_id}', group: 'responses', usage: 'read' },
  { method: 'GET', path: '/conversations/{conversation_id}/items', group: 'responses', usage: 'read' },
  {
    method: 'POST',
    path: '/conversations/{conversation_id}/items',
    group: 'responses',
    usage: 'read',
    model: 'none',
  },
  { method: 'GET', path: '/conversations/{conversation_id}/items/{item_id}', group: 'responses', usage: 'read' },
  { method: 'DELETE', path: '/conversations/{conversation_id}/items/{item_id}', group: 'responses', usage: 'read' },

  { method: 'POST', path: '/completions', group: 'completions' },
  { method: 'POST', path: '/embeddings', group: 'embeddings' },
  { method: 'POST', path: '/moderations', group: 'moderations' },

  { method: 'POST', path: '/images/generations', group: 'images' },
  { method: 'POST', path: '/images/edits', group: 'images', model: 'multipart' },
  { method: 'POST', path: '/images/variations', group: 'images', model: 'multipart' },

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

  { method: 'POST', path: '/uploads', group: 'uploads', usage: 'read', model: 'none' },
  { method: 'POST', path: '/uploads/{upload_id}/parts', group: 'uploads', usage: 'read', model: 'none' },
  { method: 'POST', path: '/uploads/{upload_id}/complete', group: 'uploads', usage: 'read', model: 'none' },
  { method: 'POST', path: '/uploads/{upload_id}/cancel', group: 'uploads', usage: 'read', model: 'none' },

  { method: 'POST', path: '/batches', group: 'batches', usage: 'read', model: 'none' },
  { method: 'GET', path: '/batches', group: 'batches' },
  { method: 'GET', path: '/batches/{batch_id}', group: 'batches' },
  { method: 'POST', path: '/batches/{batch_id}/cancel', group: 'batches', usage: 'read', model: 'none' },

  { method: 'GET', path: '/vector_stores', group: 'vector_stores' },
  { method: 'POST', path: '/vector_stores', group: 'vector_stores', usage: 'read', model: 'none' },
  { method: 'GET', path: '/vector_stores/{vector_store_id}', group: 'vector_stores' },
  { method: 'POST', path: '/vector_stores/{vector_store_id}', group: 'vector_stores', usage: 'read', model: 'none' },
  { method: 'DELETE', path: '/vector_stores/{vector_store_id}', group: 'vector_stores' },
  {
    method: 'POST',
    path: '/vector_stores/{vector_store_id}/search',
    group: 'vector_stores',
    usage: 'read',
    model: 'none',
  },
  { method: 'GET', path: '/vector_stores/{vector_store_id}/files', group: 'vector_stores' },
  {
    method: 'POST',
    path: '/vector_stores/{vector_store_id}/files',
    group: 'vector_stores',
    usage: 'read',
    model: 'none',
  },
  { method: 'GET', path: '/vector_stores/{vector_store_id}/files/{file_id}', group: 'vector_stores' },
  {
    method: 'POST',
    path: '/vector_stores/{vector_store_id}/files/{file_id}',
    group: 'vector_stores',
    usage: 'read',
    model: 'none',
  },
  { method: 'DELETE', path: '/vector_stores/{vector_store_id}/files/{file_id}', group: 'vector_stores' },
  { method: 'GET', path: '/vector_stores/{vector_store_id}/files/{file_id}/content', group: 'vector_stores' },
  {
    method: 'POST',
    path: '/vector_stores/{vector_store_id}/file_batches',
    group: 'vector_stores',
    usage: 'read',
    model: 'none',
  },
  { method: 'GET', path: '/vector_stores/{vector_store_id}/file_batches/{batch_id}', group: 'vector_stores' },
  {
    method: 'POST',
    path: '/vector_stores/{vector_store_id}/file_batches/{batch_id}/cancel',
    group: 'vector_stores',
    usage: 'read',
    model: 'none',
  },
  { method: 'GET', path: '/vector_stores/{vector_store_id}/file_batches/{batch_id}/files', group: 'vector_stores' },

  { method: 'POST', path: '/fine_tuning/jobs', group: 'fine_tuning', usage: 'read', model: 'json' },
  { method: 'GET', path: '/fine_tuning/jobs', group: 'fine_tuning' },
  { method: 'GET', path: '/fine_tuning/jobs/{job_id}', group: 'fine_tuning' },
  { method: 'POST', path: '/fine_tuning/jobs/{job_id}/cancel', group: 'fine_tuning', usage: 'read', model: 'none' },
  { method: 'GET', path: '/fine_tuning/jobs/{job_id}/events', group: 'fine_tuning' },
  { method: 'GET', path: '/fine_tuning/jobs/{job_id}/checkpoints', group: 'fine_tuning' },
  { method: 'DELETE', path: '/models/{model}', group: 'fine_tuning' },
];
