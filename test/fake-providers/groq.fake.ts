import { createHash } from 'node:crypto';
import { STATUS_CODES } from 'node:http';
import {
  ErrorBehaviour,
  FakeProviderOptions,
  isRecord,
  randomString,
  ReportedUsage,
  RequestContext,
} from './fake-provider';
import {
  ChatAnswer,
  ChunkPosition,
  CompatError,
  CompatFeature,
  OpenAiCompatibleFakeProvider,
  RateLimitShape,
} from './openai-compatible';

export const GROQ_DEFAULT_MODELS = ['llama-3.1-8b-instant', 'llama-3.3-70b-versatile'];

export function generateGroqKey(): string {
  return `gsk_${randomString(52)}`;
}

function groqRequestId(seed?: string): string {
  const tail = seed
    ? createHash('sha1').update(seed).digest('hex').slice(0, 26)
    : randomString(26, '0123456789abcdefghjkmnpqrstvwxyz');
  return `req_${tail}`;
}

export class GroqFakeProvider extends OpenAiCompatibleFakeProvider {
  readonly id = 'groq' as const;
  protected readonly displayName = 'Groq';
  protected readonly apiPrefix = '/openai/v1';
  protected override readonly features: ReadonlySet<CompatFeature> = new Set<CompatFeature>([
    'responses',
    'files',
    'batches',
    'transcriptions',
  ]);
  /** Free-tier shape: requests are counted per day, tokens per minute. */
  protected override readonly rateLimits: RateLimitShape = {
    requests: 14_400,
    tokens: 6000,
    requestsResetMs: 179_560,
    tokensResetMs: 7660,
  };

  constructor(options: FakeProviderOptions = {}) {
    super(options, GROQ_DEFAULT_MODELS);
  }

  static start(options?: FakeProviderOptions): Promise<GroqFakeProvider> {
    return new GroqFakeProvider(options).start();
  }

  protected newKey(): string {
    return generateGroqKey();
  }

  protected override defaultHeaders(_ctx: RequestContext): Record<string, string> {
    return { 'x-request-id': groqRequestId(), 'x-groq-region': 'fake-1' };
  }

  protected errorBody(error: CompatError): unknown {
    return {
      error: {
        message: error.message,
        type: error.type ?? 'invalid_request_error',
        ...(error.code !== undefined && error.code !== null ? { code: error.code } : {}),
      },
    };
  }

  protected usageBody(usage: ReportedUsage): Record<string, unknown> {
    return {
      queue_time: 0.012,
      prompt_tokens: usage.input,
      prompt_time: 0.002,
      completion_tokens: usage.output,
      completion_time: 0.004,
      total_tokens: usage.input + usage.output,
      total_time: 0.006,
      ...(usage.cached > 0 ? { prompt_tokens_details: { cached_tokens: usage.cached } } : {}),
    };
  }

  protected modelObject(id: string): Record<string, unknown> {
    return {
      id,
      object: 'model',
      created: 1_700_000_000,
      owned_by: 'Meta',
      active: true,
      context_window: 131_072,
      public_apps: null,
      max_completion_tokens: 32_768,
    };
  }

  protected override completionBody(answer: ChatAnswer): Record<string, unknown> {
    return {
      id: answer.id,
      object: 'chat.completion',
      created: answer.created,
      model: answer.model,
      choices: [
        {
          index: 0,
          message: { role: 'assistant', ...this.messageFields(answer) },
          logprobs: null,
          finish_reason: answer.finishReason,
        },
      ],
      usage: this.usageBody(answer.usage),
      usage_breakdown: null,
      system_fingerprint: 'fp_fake0001',
      x_groq: { id: groqRequestId(answer.id) },
      service_tier: 'on_demand',
    };
  }

  /** Groq streams carry the usage in `x_groq.usage` of the finish chunk, not in a chunk of its own. */
  protected override decorateChunk(
    chunk: Record<string, unknown>,
    position: ChunkPosition,
    answer: ChatAnswer,
  ): Record<string, unknown> {
    const groqChunk: Record<string, unknown> = { ...chunk, service_tier: 'on_demand' };
    if (position === 'first') {
      groqChunk.x_groq = { id: groqRequestId(answer.id) };
    } else if (position === 'finish') {
      groqChunk.x_groq = { id: groqRequestId(answer.id), usage: this.usageBody(answer.usage) };
    }
    return groqChunk;
  }

  protected override usageChunk(): Record<string, unknown> | undefined {
    return undefined;
  }

  protected override streamReportsUsage(): boolean {
    return true;
  }

  protected authError(): CompatError {
    return this.invalidKeyError();
  }

  protected behaviourError(ctx: RequestContext, behaviour: ErrorBehaviour): CompatError {
    switch (behaviour.kind) {
      case 'revoked':
      case 'restricted':
        return this.invalidKeyError();
      case 'rate_limited': {
        const retryAfter = this.retryAfterOf(behaviour);
        const model = isRecord(ctx.body) && typeof ctx.body.model === 'string' ? ctx.body.model : 'unknown';
        const limit = this.rateLimits.requests;
        return {
          status: 429,
          message: `Rate limit reached for model \`${model}\` in organization \`org_fake0001\` service tier \`on_demand\` on requests per day (RPD): Limit ${limit}, Used ${limit}, Requested 1. Please try again in ${retryAfter}s. Visit https://console.groq.com/docs/rate-limits for more information.`,
          type: 'requests',
          code: 'rate_limit_exceeded',
          headers: { 'retry-after': String(retryAfter), ...this.rateLimitHeaders(ctx, retryAfter) },
        };
      }
      case 'out_of_credit':
        // Groq has no prepaid credit; hitting the organization's spend limit blocks every key.
        return {
          status: 400,
          message:
            'API access has been blocked because your organization has reached its spend limit. Raise the limit in Settings > Billing > Limits or wait for the next billing cycle.',
          type: 'invalid_request_error',
          code: 'blocked_api_access',
        };
      case 'failing':
        return this.serverError(behaviour.status ?? 500);
    }
  }

  private invalidKeyError(): CompatError {
    return {
      status: 401,
      message: 'Invalid API Key',
      type: 'invalid_request_error',
      code: 'invalid_api_key',
    };
  }

  private serverError(status: number): CompatError {
    if (status === 498) {
      return {
        status,
        message: 'Flex tier capacity exceeded. This model is at capacity for the flex tier, please try again later.',
        type: 'capacity_exceeded',
        code: 'capacity_exceeded',
      };
    }
    const text = STATUS_CODES[status] ?? 'Internal Server Error';
    return {
      status,
      message: text,
      type: text.toLowerCase().replace(/[^a-z]+/g, '_'),
    };
  }
}
