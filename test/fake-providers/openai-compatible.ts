import { createHash } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import {
  contentTexts,
  countWords,
  ErrorBehaviour,
  FakeProvider,
  formatDuration,
  isRecord,
  MidStreamErrorSpec,
  nowSeconds,
  randomString,
  ReplyPlan,
  ReportedUsage,
  RequestContext,
  ValidBehaviour,
} from './fake-provider';

/** An error in the OpenAI family's terms; each provider renders it in its own body shape. */
export interface CompatError {
  status: number;
  message: string;
  type?: string | null;
  code?: string | number | null;
  param?: string | null;
  metadata?: Record<string, unknown>;
  headers?: Record<string, string>;
}

export interface ChatRequest {
  body: Record<string, unknown>;
  model: string;
  promptTexts: string[];
  maxTokens: number | undefined;
  stream: boolean;
  includeUsage: boolean;
}

export interface ChatAnswer {
  id: string;
  created: number;
  model: string;
  plan: ReplyPlan;
  usage: ReportedUsage;
  finishReason: 'stop' | 'length';
}

export type ChunkPosition = 'first' | 'content' | 'finish';

export interface RateLimitShape {
  requests: number;
  tokens: number;
  requestsResetMs: number;
  tokensResetMs: number;
}

const DEFAULT_RETRY_AFTER_SECONDS = 20;
const MAX_EMBEDDING_DIMENSIONS = 3072;

export function bearerToken(req: IncomingMessage): string | undefined {
  const header = req.headers.authorization;
  if (typeof header !== 'string') {
    return undefined;
  }
  const match = /^Bearer\s+(.+)$/i.exec(header.trim());
  return match ? match[1].trim() : undefined;
}

function finiteNumber(value: unknown): number | undefined {
  return typeof value === 'number' && Number.isFinite(value) ? value : undefined;
}

/** Shared machinery of the providers that speak OpenAI's chat-completions dialect. */
export abstract class OpenAiCompatibleFakeProvider extends FakeProvider {
  /** Path prefix of the API, e.g. `/v1`; the base URL is origin + prefix. */
  protected abstract readonly apiPrefix: string;
  protected readonly supportsEmbeddings: boolean = false;
  protected readonly rateLimits: RateLimitShape = {
    requests: 5000,
    tokens: 2_000_000,
    requestsResetMs: 12,
    tokensResetMs: 6000,
  };

  get baseUrl(): string {
    return `${this.origin}${this.apiPrefix}`;
  }

  // ---- provider hooks -------------------------------------------------------------------------

  protected abstract errorBody(error: CompatError): unknown;

  protected abstract usageBody(usage: ReportedUsage): Record<string, unknown>;

  protected abstract modelObject(id: string): Record<string, unknown>;

  protected abstract authError(ctx: RequestContext, reason: 'missing' | 'unknown'): CompatError;

  protected abstract behaviourError(ctx: RequestContext, behaviour: ErrorBehaviour): CompatError;

  /** Provider-specific endpoints; returns true when it answered. */
  protected routeExtra(_ctx: RequestContext, _subPath: string): Promise<boolean> {
    return Promise.resolve(false);
  }

  protected completionId(): string {
    return `chatcmpl-${randomString(29)}`;
  }

  protected completionBody(answer: ChatAnswer): Record<string, unknown> {
    return {
      id: answer.id,
      object: 'chat.completion',
      created: answer.created,
      model: answer.model,
      choices: [
        {
          index: 0,
          message: { role: 'assistant', content: answer.plan.text, refusal: null, annotations: [] },
          logprobs: null,
          finish_reason: answer.finishReason,
        },
      ],
      usage: this.usageBody(answer.usage),
      service_tier: 'default',
      system_fingerprint: 'fp_fake0001',
    };
  }

  /** OpenAI marks every chunk `usage: null` when the client asked for a usage chunk. */
  protected usageNullOnChunks(_request: ChatRequest): boolean {
    return false;
  }

  protected decorateChunk(
    chunk: Record<string, unknown>,
    _position: ChunkPosition,
    _answer: ChatAnswer,
  ): Record<string, unknown> {
    return chunk;
  }

  /** The chunk after the finish chunk that carries the usage, if this provider sends one. */
  protected usageChunk(
    request: ChatRequest,
    base: Record<string, unknown>,
    answer: ChatAnswer,
  ): Record<string, unknown> | undefined {
    return request.includeUsage ? { ...base, choices: [], usage: this.usageBody(answer.usage) } : undefined;
  }

  /** Whether a complete stream told the client its usage (in any chunk). */
  protected streamReportsUsage(request: ChatRequest): boolean {
    return request.includeUsage;
  }

  protected midStreamErrorChunk(_base: Record<string, unknown>, spec: MidStreamErrorSpec): Record<string, unknown> {
    return {
      error: {
        message: spec.message ?? 'The server had an error while processing your request. Sorry about that!',
        type: 'server_error',
        param: null,
        code: spec.code ?? null,
      },
    };
  }

  /** Opens the SSE answer; OpenRouter overrides it to keep the connection busy while it waits. */
  protected async openChatStream(ctx: RequestContext, _behaviour: ValidBehaviour): Promise<boolean> {
    return Promise.resolve(this.openSse(ctx, this.rateLimitHeaders(ctx)));
  }

  protected defersValidDelay(_ctx: RequestContext): boolean {
    return false;
  }

  /** x-ratelimit-* headers; a rate-limited key sees 0 remaining and the retry delay as reset. */
  protected rateLimitHeaders(ctx: RequestContext, limitedForSeconds?: number): Record<string, string> {
    const limits = this.rateLimits;
    const limited = limitedForSeconds !== undefined;
    const remainingRequests = limited ? 0 : Math.max(0, limits.requests - this.requestCount(ctx.key));
    const remainingTokens = limited ? 0 : Math.max(0, limits.tokens - this.tokensUsed(ctx.key));
    const limitedMs = (limitedForSeconds ?? 0) * 1000;
    return {
      'x-ratelimit-limit-requests': String(limits.requests),
      'x-ratelimit-limit-tokens': String(limits.tokens),
      'x-ratelimit-remaining-requests': String(remainingRequests),
      'x-ratelimit-remaining-tokens': String(remainingTokens),
      'x-ratelimit-reset-requests': formatDuration(limited ? limitedMs : limits.requestsResetMs),
      'x-ratelimit-reset-tokens': formatDuration(limited ? limitedMs : limits.tokensResetMs),
    };
  }

  protected retryAfterOf(behaviour: { retryAfterSeconds?: number }): number {
    return behaviour.retryAfterSeconds ?? DEFAULT_RETRY_AFTER_SECONDS;
  }

  protected modelNotFoundError(model: string): CompatError {
    return {
      status: 404,
      message: `The model \`${model}\` does not exist or you do not have access to it.`,
      type: 'invalid_request_error',
      param: null,
      code: 'model_not_found',
    };
  }

  // ---- FakeProvider hooks ---------------------------------------------------------------------

  protected presentedKey(req: IncomingMessage): string | undefined {
    return bearerToken(req);
  }

  protected answerAuthFailure(ctx: RequestContext, reason: 'missing' | 'unknown'): void {
    this.sendError(ctx, this.authError(ctx, reason));
  }

  protected answerBehaviour(ctx: RequestContext, behaviour: ErrorBehaviour): void {
    this.sendError(ctx, this.behaviourError(ctx, behaviour));
  }

  protected answerBodyTooLarge(ctx: RequestContext): void {
    this.sendError(ctx, {
      status: 413,
      message: 'Request body too large.',
      type: 'invalid_request_error',
      param: null,
      code: 'request_too_large',
    });
  }

  protected answerInvalidJson(ctx: RequestContext): void {
    this.sendError(ctx, {
      status: 400,
      message:
        "We could not parse the JSON body of your request. (HINT: This likely means you aren't using your HTTP library correctly. The OpenAI API expects a JSON payload, but what was sent was not valid JSON.)",
      type: 'invalid_request_error',
      param: null,
      code: null,
    });
  }

  protected answerInternalError(ctx: RequestContext): void {
    this.sendError(ctx, {
      status: 500,
      message: 'The server had an error while processing your request. Sorry about that!',
      type: 'server_error',
      param: null,
      code: null,
    });
  }

  protected answerNotFound(ctx: RequestContext): void {
    this.sendError(ctx, {
      status: 404,
      message: `Invalid URL (${ctx.method} ${ctx.path})`,
      type: 'invalid_request_error',
      param: null,
      code: null,
    });
  }

  protected sendError(ctx: RequestContext, error: CompatError): void {
    this.sendJson(ctx, error.status, this.errorBody(error), error.headers);
  }

  protected async route(ctx: RequestContext): Promise<void> {
    if (!ctx.path.startsWith(`${this.apiPrefix}/`)) {
      this.answerNotFound(ctx);
      return;
    }
    const sub = ctx.path.slice(this.apiPrefix.length);
    if (await this.routeExtra(ctx, sub)) {
      return;
    }
    const modelMatch = /^\/models\/(.+)$/.exec(sub);
    if (ctx.method === 'GET' && sub === '/models') {
      await this.listModels(ctx);
    } else if (ctx.method === 'GET' && modelMatch) {
      await this.retrieveModel(ctx, decodeURIComponent(modelMatch[1]));
    } else if (ctx.method === 'POST' && sub === '/chat/completions') {
      await this.chatCompletions(ctx);
    } else if (ctx.method === 'POST' && sub === '/embeddings' && this.supportsEmbeddings) {
      await this.embeddings(ctx);
    } else {
      this.answerNotFound(ctx);
    }
  }

  // ---- endpoints ------------------------------------------------------------------------------

  protected async listModels(ctx: RequestContext): Promise<void> {
    if (await this.admit(ctx, { generation: false })) {
      this.sendJson(ctx, 200, {
        object: 'list',
        data: this.models.map((id) => this.modelObject(id)),
      });
    }
  }

  protected async retrieveModel(ctx: RequestContext, model: string): Promise<void> {
    if (!(await this.admit(ctx, { generation: false }))) {
      return;
    }
    if (this.models.includes(model)) {
      this.sendJson(ctx, 200, this.modelObject(model));
    } else {
      this.sendError(ctx, this.modelNotFoundError(model));
    }
  }

  protected async chatCompletions(ctx: RequestContext): Promise<void> {
    const behaviour = await this.admit(ctx, {
      generation: true,
      deferValidDelay: this.defersValidDelay(ctx),
    });
    if (!behaviour) {
      return;
    }
    const request = this.parseChatRequest(ctx);
    if (!request) {
      return;
    }
    const plan = this.planReply(behaviour, request.maxTokens);
    const answer: ChatAnswer = {
      id: this.completionId(),
      created: nowSeconds(),
      model: request.model,
      plan,
      usage: this.usageFor(behaviour, request.promptTexts, plan, request.model),
      finishReason: plan.truncated ? 'length' : 'stop',
    };
    if (request.stream) {
      await this.streamChat(ctx, behaviour, request, answer);
      return;
    }
    if (this.sendJson(ctx, 200, this.completionBody(answer), this.rateLimitHeaders(ctx))) {
      ctx.record.reportedUsage = answer.usage;
      this.bill(ctx, answer.usage);
    }
  }

  protected parseChatRequest(ctx: RequestContext): ChatRequest | undefined {
    const body = isRecord(ctx.body) ? ctx.body : {};
    if (typeof body.model !== 'string' || body.model.length === 0) {
      this.sendError(ctx, {
        status: 400,
        message: 'you must provide a model parameter',
        type: 'invalid_request_error',
        param: null,
        code: null,
      });
      return undefined;
    }
    if (!Array.isArray(body.messages)) {
      this.sendError(ctx, {
        status: 400,
        message: "Missing required parameter: 'messages'.",
        type: 'invalid_request_error',
        param: 'messages',
        code: 'missing_required_parameter',
      });
      return undefined;
    }
    if (!this.isModelKnown(body.model)) {
      this.sendError(ctx, this.modelNotFoundError(body.model));
      return undefined;
    }
    const options = isRecord(body.stream_options) ? body.stream_options : {};
    return {
      body,
      model: body.model,
      promptTexts: body.messages.flatMap((message: unknown) =>
        isRecord(message) ? contentTexts(message.content) : [],
      ),
      maxTokens: finiteNumber(body.max_completion_tokens) ?? finiteNumber(body.max_tokens),
      stream: body.stream === true,
      includeUsage: options.include_usage === true,
    };
  }

  protected async streamChat(
    ctx: RequestContext,
    behaviour: ValidBehaviour,
    request: ChatRequest,
    answer: ChatAnswer,
  ): Promise<void> {
    if (!(await this.openChatStream(ctx, behaviour))) {
      return;
    }
    const base: Record<string, unknown> = {
      id: answer.id,
      object: 'chat.completion.chunk',
      created: answer.created,
      model: answer.model,
      service_tier: 'default',
      system_fingerprint: 'fp_fake0001',
    };
    const usageNull = this.usageNullOnChunks(request) ? { usage: null } : {};
    const chunk = (
      position: ChunkPosition,
      delta: Record<string, unknown>,
      finishReason: string | null,
    ): Record<string, unknown> =>
      this.decorateChunk(
        {
          ...base,
          choices: [{ index: 0, delta, logprobs: null, finish_reason: finishReason }],
          ...usageNull,
        },
        position,
        answer,
      );
    const failure = behaviour.midStreamError;
    const failAfter = Math.max(0, failure?.afterChunks ?? 1);

    if (!this.sseData(ctx, chunk('first', { role: 'assistant', content: '' }, null))) {
      return;
    }
    await this.pause();
    for (let index = 0; index <= answer.plan.pieces.length; index += 1) {
      if (failure && index === Math.min(failAfter, answer.plan.pieces.length)) {
        // The status line already said 200: the error can only travel as a data chunk.
        this.sseData(ctx, this.midStreamErrorChunk(base, failure));
        this.endSse(ctx);
        return;
      }
      if (index === answer.plan.pieces.length) {
        break;
      }
      if (!this.sseData(ctx, chunk('content', { content: answer.plan.pieces[index] }, null))) {
        return;
      }
      await this.pause();
    }
    if (!this.sseData(ctx, chunk('finish', {}, answer.finishReason))) {
      return;
    }
    const usageChunk = this.usageChunk(request, base, answer);
    if (usageChunk) {
      await this.pause();
      if (!this.sseData(ctx, usageChunk)) {
        return;
      }
    }
    this.bill(ctx, answer.usage);
    if (this.streamReportsUsage(request)) {
      ctx.record.reportedUsage = answer.usage;
    }
    this.sseData(ctx, '[DONE]');
    this.endSse(ctx);
  }

  protected async embeddings(ctx: RequestContext): Promise<void> {
    const behaviour = await this.admit(ctx, { generation: true });
    if (!behaviour) {
      return;
    }
    const body = isRecord(ctx.body) ? ctx.body : {};
    const inputs = typeof body.input === 'string' ? [body.input] : body.input;
    if (typeof body.model !== 'string' || !Array.isArray(inputs) || inputs.length === 0) {
      this.sendError(ctx, {
        status: 400,
        message: "'input' and 'model' are required.",
        type: 'invalid_request_error',
        param: 'input',
        code: null,
      });
      return;
    }
    if (!this.isModelKnown(body.model)) {
      this.sendError(ctx, this.modelNotFoundError(body.model));
      return;
    }
    const requested = finiteNumber(body.dimensions);
    const dimensions =
      requested !== undefined && requested >= 1 ? Math.min(Math.floor(requested), MAX_EMBEDDING_DIMENSIONS) : 8;
    const texts = inputs.map((input: unknown) => (typeof input === 'string' ? input : JSON.stringify(input)));
    const tokens = behaviour.usage?.input ?? texts.reduce((sum, text) => sum + countWords(text), 0);
    const usage: ReportedUsage = { input: tokens, output: 0, cached: 0 };
    const base64 = body.encoding_format === 'base64';
    const data = texts.map((text, index) => {
      const vector = embeddingVector(text, dimensions);
      return {
        object: 'embedding',
        index,
        // The openai SDK asks for base64 by default and decodes it as little-endian float32.
        embedding: base64 ? Buffer.from(vector.buffer).toString('base64') : Array.from(vector),
      };
    });
    const sent = this.sendJson(
      ctx,
      200,
      {
        object: 'list',
        data,
        model: body.model,
        usage: { prompt_tokens: tokens, total_tokens: tokens },
      },
      this.rateLimitHeaders(ctx),
    );
    if (sent) {
      ctx.record.reportedUsage = usage;
      this.bill(ctx, usage);
    }
  }
}

/** Same text, same vector: derived from a hash so tests can compare embeddings. */
function embeddingVector(text: string, dimensions: number): Float32Array {
  const vector = new Float32Array(dimensions);
  let digest = createHash('sha256').update(text).digest();
  for (let i = 0; i < dimensions; i += 1) {
    if (i > 0 && i % digest.length === 0) {
      digest = createHash('sha256').update(digest).digest();
    }
    vector[i] = Math.round(((digest[i % digest.length] / 255) * 2 - 1) * 1e4) / 1e4;
  }
  return vector;
}
