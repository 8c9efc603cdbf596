import { createHash } from 'node:crypto';
import {
  ErrorBehaviour,
  FakeProviderOptions,
  isRecord,
  KeyBehaviour,
  MidStreamErrorSpec,
  nowSeconds,
  randomString,
  ReportedUsage,
  RequestContext,
  roundUsd,
  ValidBehaviour,
} from './fake-provider';
import {
  ChatAnswer,
  ChatRequest,
  ChunkPosition,
  CompatError,
  CompatFeature,
  OpenAiCompatibleFakeProvider,
} from './openai-compatible';

/** USD per token, as strings: the shape of `GET /api/v1/models` → `pricing`. */
export const OPENROUTER_MODEL_PRICES: Record<string, { prompt: string; completion: string }> = {
  'openai/gpt-4o-mini': { prompt: '0.00000015', completion: '0.0000006' },
  'anthropic/claude-sonnet-4.5': { prompt: '0.000003', completion: '0.000015' },
  'meta-llama/llama-3.3-70b-instruct': { prompt: '0.00000013', completion: '0.0000004' },
};
const FALLBACK_PRICE = { prompt: '0.000001', completion: '0.000002' };

export const OPENROUTER_DEFAULT_MODELS = Object.keys(OPENROUTER_MODEL_PRICES);

export function generateOpenRouterKey(): string {
  return `sk-or-v1-${randomString(64, '0123456789abcdef')}`;
}

/** What OpenRouter knows about a key: its management hash, name, credit limit and spend. */
export interface OpenRouterKeyRecord {
  key: string;
  hash: string;
  name: string;
  limit: number | null;
  usage: number;
  disabled: boolean;
  createdAt: string;
}

const DEFAULT_RETRY_AFTER_SECONDS = 10;
const REQUESTS_PER_WINDOW = 20;

function hashOf(key: string): string {
  return createHash('sha256').update(key).digest('hex');
}

function maskOpenRouterKey(key: string): string {
  return `${key.slice(0, 12)}...${key.slice(-3)}`;
}

/**
 * OpenRouter: the OpenAI dialect plus a USD `cost` in every usage, `GET /key`, the management
 * API under `/keys`, keep-alive comments while a stream waits and errors inside a 200 stream.
 */
export class OpenRouterFakeProvider extends OpenAiCompatibleFakeProvider {
  readonly id = 'openrouter' as const;
  /** Keys minted through the management API, in order. */
  readonly mintedKeys: string[] = [];
  /** Keys deleted through the management API, in order. */
  readonly retiredKeys: string[] = [];
  protected readonly displayName = 'OpenRouter';
  protected readonly apiPrefix = '/api/v1';
  protected override readonly supportsEmbeddings = true;
  protected override readonly features: ReadonlySet<CompatFeature> = new Set<CompatFeature>([
    'responses',
    'completions',
  ]);
  protected override readonly reportsCost = true;
  private managementKey: string | undefined;
  private readonly records = new Map<string, OpenRouterKeyRecord>();

  constructor(options: FakeProviderOptions = {}) {
    super(options, OPENROUTER_DEFAULT_MODELS);
  }

  static start(options?: FakeProviderOptions): Promise<OpenRouterFakeProvider> {
    return new OpenRouterFakeProvider(options).start();
  }

  override reset(): void {
    super.reset();
    this.mintedKeys.length = 0;
    this.retiredKeys.length = 0;
    this.records.clear();
    this.managementKey = undefined;
  }

  /** A management key: may call `/keys`, nothing else (as with the real thing). */
  generateManagementKey(): string {
    this.managementKey = generateOpenRouterKey();
    return this.managementKey;
  }

  setManagementKey(key: string): void {
    this.managementKey = key;
  }

  /** The credit limit `GET /key` reports for a key; null for none. */
  setKeyLimit(key: string, limitUsd: number | null): void {
    this.recordOf(key).limit = limitUsd;
  }

  keyRecord(key: string): OpenRouterKeyRecord | undefined {
    const record = this.records.get(key);
    return record ? { ...record } : undefined;
  }

  // ---- wire format ----------------------------------------------------------------------------

  protected newKey(): string {
    return generateOpenRouterKey();
  }

  protected override behaviourOf(key: string): KeyBehaviour | undefined {
    return this.records.get(key)?.disabled ? { kind: 'revoked' } : super.behaviourOf(key);
  }

  protected override costFor(model: string, input: number, output: number): number {
    const price = OPENROUTER_MODEL_PRICES[model] ?? FALLBACK_PRICE;
    return roundUsd(input * Number(price.prompt) + output * Number(price.completion));
  }

  protected override onBilled(key: string | undefined, usage: ReportedUsage): void {
    if (key !== undefined) {
      this.recordOf(key).usage = roundUsd(this.recordOf(key).usage + (usage.cost ?? 0));
    }
  }

  protected override completionId(): string {
    return `gen-${nowSeconds()}-${randomString(20)}`;
  }

  protected override completionBody(answer: ChatAnswer): Record<string, unknown> {
    return {
      id: answer.id,
      provider: 'OpenAI',
      model: answer.model,
      object: 'chat.completion',
      created: answer.created,
      choices: [
        {
          logprobs: null,
          finish_reason: answer.finishReason,
          native_finish_reason: answer.finishReason,
          index: 0,
          message: { role: 'assistant', ...this.messageFields(answer), refusal: null, reasoning: null },
        },
      ],
      usage: this.usageBody(answer.usage),
    };
  }

  protected override decorateChunk(
    chunk: Record<string, unknown>,
    _position: ChunkPosition,
    _answer: ChatAnswer,
  ): Record<string, unknown> {
    return { ...chunk, provider: 'OpenAI' };
  }

  /** Always sent, asked for or not: the last message has no choices and the usage with cost. */
  protected override usageChunk(
    _request: ChatRequest,
    base: Record<string, unknown>,
    answer: ChatAnswer,
  ): Record<string, unknown> | undefined {
    return { ...base, provider: 'OpenAI', choices: [], usage: this.usageBody(answer.usage) };
  }

  protected override streamReportsUsage(): boolean {
    return true;
  }

  protected override defersValidDelay(ctx: RequestContext): boolean {
    return ctx.record.stream;
  }

  /** Headers first, then `: OPENROUTER PROCESSING` comments while the model is still thinking. */
  protected override async openChatStream(ctx: RequestContext, behaviour: ValidBehaviour): Promise<boolean> {
    if (!this.openSse(ctx) || !this.sseComment(ctx, 'OPENROUTER PROCESSING')) {
      return false;
    }
    let waiting = behaviour.delayMs ?? 0;
    while (waiting > 0) {
      const step = Math.min(waiting, 200);
      await this.sleep(step);
      waiting -= step;
      if (!this.sseComment(ctx, 'OPENROUTER PROCESSING')) {
        return false;
      }
    }
    return true;
  }

  protected override midStreamErrorChunk(
    base: Record<string, unknown>,
    spec: MidStreamErrorSpec,
  ): Record<string, unknown> {
    return {
      ...base,
      provider: 'OpenAI',
      error: { code: spec.code ?? 'server_error', message: spec.message ?? 'Provider disconnected' },
      choices: [
        {
          index: 0,
          delta: { content: '' },
          finish_reason: 'error',
          native_finish_reason: 'error',
        },
      ],
    };
  }

  protected errorBody(error: CompatError): unknown {
    return {
      error: {
        code: typeof error.code === 'number' ? error.code : error.status,
        message: error.message,
        ...(error.metadata ? { metadata: error.metadata } : {}),
      },
    };
  }

  protected usageBody(usage: ReportedUsage): Record<string, unknown> {
    return {
      prompt_tokens: usage.input,
      completion_tokens: usage.output,
      total_tokens: usage.input + usage.output,
      cost: usage.cost ?? 0,
      is_byok: false,
      prompt_tokens_details: { cached_tokens: usage.cached, audio_tokens: 0 },
      cost_details: { upstream_inference_cost: null },
      completion_tokens_details: { reasoning_tokens: 0, image_tokens: 0 },
    };
  }

  protected modelObject(id: string): Record<string, unknown> {
    const price = OPENROUTER_MODEL_PRICES[id] ?? FALLBACK_PRICE;
    return {
      id,
      canonical_slug: id,
      name: id,
      created: 1_700_000_000,
      description: `Fake ${id}`,
      context_length: 128_000,
      architecture: {
        modality: 'text->text',
        input_modalities: ['text'],
        output_modalities: ['text'],
        tokenizer: 'Other',
      },
      pricing: { ...price, request: '0', image: '0', web_search: '0', internal_reasoning: '0' },
      top_provider: { context_length: 128_000, max_completion_tokens: 16_384, is_moderated: true },
      per_request_limits: null,
      supported_parameters: ['max_tokens', 'temperature', 'stream', 'tools'],
    };
  }

  /** The model list is public: no key needed. */
  protected override listModels(ctx: RequestContext): Promise<void> {
    this.sendJson(ctx, 200, { data: this.models.map((id) => this.modelObject(id)) });
    return Promise.resolve();
  }

  protected authError(_ctx: RequestContext, reason: 'missing' | 'unknown'): CompatError {
    return { status: 401, message: reason === 'missing' ? 'No auth credentials found' : 'User not found.' };
  }

  protected behaviourError(ctx: RequestContext, behaviour: ErrorBehaviour): CompatError {
    const model = isRecord(ctx.body) && typeof ctx.body.model === 'string' ? ctx.body.model : '';
    switch (behaviour.kind) {
      case 'revoked':
        return { status: 401, message: 'User not found.' };
      case 'restricted':
        return {
          status: 403,
          message: `${model || 'The model'} requires moderation on OpenAI. Your input was flagged for "harassment".`,
          metadata: {
            reasons: ['harassment'],
            flagged_input: '...',
            provider_name: 'OpenAI',
            model_slug: model,
          },
        };
      case 'rate_limited': {
        const retryAfter = behaviour.retryAfterSeconds ?? DEFAULT_RETRY_AFTER_SECONDS;
        return {
          status: 429,
          message: `Rate limit exceeded: limit_rpm/${model || 'requests'}. High demand for this model.`,
          headers: {
            'X-RateLimit-Limit': String(REQUESTS_PER_WINDOW),
            'X-RateLimit-Remaining': '0',
            // Epoch milliseconds, unlike the durations of OpenAI and Groq.
            'X-RateLimit-Reset': String(Date.now() + retryAfter * 1000),
          },
        };
      }
      case 'out_of_credit':
        return behaviour.variant === 'spend_limit'
          ? {
              status: 403,
              message: 'Key limit exceeded (total limit). Manage it using https://openrouter.ai/settings/keys',
            }
          : {
              status: 402,
              message:
                'This request requires more credits, or fewer max_tokens. You requested up to 4096 tokens, but can only afford 12. To increase, visit https://openrouter.ai/settings/credits and add more credits',
            };
      case 'failing': {
        const status = behaviour.status ?? 502;
        const messages: Record<number, string> = {
          408: 'Request timed out',
          502: 'Provider returned error',
          503: 'No available model provider that meets your routing requirements',
        };
        return {
          status,
          message: messages[status] ?? 'Internal Server Error',
          ...(status === 502 ? { metadata: { provider_name: 'OpenAI', raw: 'upstream connection reset' } } : {}),
        };
      }
    }
  }

  // ---- /key and the management API ------------------------------------------------------------

  protected override isOrganizationPath(path: string): boolean {
    return /^\/api\/v1\/(keys|credits)(\/|$)/.test(path);
  }

  protected override async routeExtra(ctx: RequestContext, sub: string): Promise<boolean> {
    if (sub === '/generation' && ctx.method === 'GET') {
      await this.generation(ctx);
      return true;
    }
    if (sub === '/key' && ctx.method === 'GET') {
      await this.currentKey(ctx);
      return true;
    }
    if (sub !== '/keys' && !sub.startsWith('/keys/')) {
      return false;
    }
    if (ctx.key === undefined || ctx.key !== this.managementKey) {
      if (ctx.key !== undefined && this.hasKey(ctx.key)) {
        this.sendError(ctx, {
          status: 403,
          message: 'Only management keys can perform this operation',
        });
      } else {
        this.answerAuthFailure(ctx, ctx.key === undefined ? 'missing' : 'unknown');
      }
      return true;
    }
    const hash = sub === '/keys' ? undefined : decodeURIComponent(sub.slice('/keys/'.length));
    if (hash === undefined) {
      if (ctx.method === 'POST') {
        this.createKey(ctx);
      } else if (ctx.method === 'GET') {
        this.sendJson(ctx, 200, {
          data: [...this.records.values()]
            .filter((record) => record.key !== this.managementKey)
            .map((record) => this.keyObject(record)),
        });
      } else {
        this.answerNotFound(ctx);
      }
      return true;
    }
    const record = [...this.records.values()].find((candidate) => candidate.hash === hash);
    if (!record) {
      this.sendError(ctx, { status: 404, message: 'Key not found' });
      return true;
    }
    if (ctx.method === 'GET') {
      this.sendJson(ctx, 200, { data: this.keyObject(record) });
    } else if (ctx.method === 'PATCH') {
      const body = isRecord(ctx.body) ? ctx.body : {};
      if (typeof body.name === 'string') {
        record.name = body.name;
      }
      if (typeof body.disabled === 'boolean') {
        record.disabled = body.disabled;
      }
      if (typeof body.limit === 'number' || body.limit === null) {
        record.limit = body.limit;
      }
      this.sendJson(ctx, 200, { data: this.keyObject(record) });
    } else if (ctx.method === 'DELETE') {
      this.records.delete(record.key);
      this.deleteKey(record.key);
      this.retiredKeys.push(record.key);
      this.sendJson(ctx, 200, { deleted: true });
    } else {
      this.answerNotFound(ctx);
    }
    return true;
  }

  private async currentKey(ctx: RequestContext): Promise<void> {
    const behaviour = this.authenticate(ctx);
    if (!behaviour) {
      return;
    }
    // Listing a key's own limits works for a key without credit, as it does for real.
    const admitted = await this.applyBehaviour(ctx, behaviour, { generation: false });
    if (!admitted || ctx.key === undefined) {
      return;
    }
    const record = this.recordOf(ctx.key);
    const exhausted = behaviour.kind === 'out_of_credit';
    const limit = exhausted ? (record.limit ?? 10) : record.limit;
    this.sendJson(ctx, 200, {
      data: {
        label: maskOpenRouterKey(record.key),
        limit,
        limit_remaining: limit === null ? null : exhausted ? 0 : roundUsd(limit - record.usage),
        limit_reset: null,
        include_byok_in_limit: false,
        usage: record.usage,
        usage_daily: record.usage,
        usage_weekly: record.usage,
        usage_monthly: record.usage,
        byok_usage: 0,
        is_free_tier: false,
        is_provisioning_key: false,
        // Deprecated by OpenRouter but still sent.
        rate_limit: { requests: REQUESTS_PER_WINDOW, interval: '10s' },
      },
    });
  }

  private createKey(ctx: RequestContext): void {
    const body = isRecord(ctx.body) ? ctx.body : {};
    if (typeof body.name !== 'string' || body.name.trim() === '') {
      this.sendError(ctx, { status: 400, message: 'Name is required' });
      return;
    }
    const key = generateOpenRouterKey();
    this.setKey(key, { kind: 'valid' });
    const record = this.recordOf(key);
    record.name = body.name;
    record.limit = typeof body.limit === 'number' ? body.limit : null;
    this.mintedKeys.push(key);
    this.sendJson(ctx, 201, { data: this.keyObject(record), key });
  }

  private recordOf(key: string): OpenRouterKeyRecord {
    let record = this.records.get(key);
    if (!record) {
      record = {
        key,
        hash: hashOf(key),
        name: 'Unnamed',
        limit: null,
        usage: 0,
        disabled: false,
        createdAt: new Date().toISOString(),
      };
      this.records.set(key, record);
    }
    return record;
  }

  private keyObject(record: OpenRouterKeyRecord): Record<string, unknown> {
    return {
      hash: record.hash,
      name: record.name,
      label: maskOpenRouterKey(record.key),
      disabled: record.disabled,
      limit: record.limit,
      limit_remaining: record.limit === null ? null : roundUsd(record.limit - record.usage),
      limit_reset: null,
      include_byok_in_limit: false,
      usage: record.usage,
      usage_daily: record.usage,
      usage_weekly: record.usage,
      usage_monthly: record.usage,
      created_at: record.createdAt,
      updated_at: null,
    };
  }

  /** `GET /generation?id=`: what a past call cost; a read-back, not new usage. */
  private async generation(ctx: RequestContext): Promise<void> {
    if (!(await this.admit(ctx, { generation: false }))) return;
    const id = ctx.query.get('id');
    if (!id) {
      this.sendError(ctx, { status: 400, message: 'id is required' });
      return;
    }
    this.sendJson(ctx, 200, {
      data: { id, model: 'openai/gpt-4o-mini', total_cost: 0, tokens_prompt: 0, tokens_completion: 0, streamed: false },
    });
  }
}
