import { STATUS_CODES } from 'node:http';
import {
  ErrorBehaviour,
  FakeProviderOptions,
  isRecord,
  nowSeconds,
  randomString,
  ReportedUsage,
  RequestContext,
} from './fake-provider';
import { CompatError, CompatFeature, OpenAiCompatibleFakeProvider } from './openai-compatible';

export const OPENAI_DEFAULT_MODELS = [
  'gpt-5',
  'gpt-5.4-mini',
  'gpt-4o-mini',
  'text-embedding-3-small',
  'omni-moderation-latest',
  'gpt-image-1',
  'dall-e-3',
  'whisper-1',
  'gpt-4o-transcribe',
  'tts-1',
];

const KEY_ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-';

/** Same shape the secret scanners look for: prefix, 74 chars, `T3BlbkFJ`, 74 chars. */
export function generateOpenAiKey(kind: 'proj' | 'svcacct' | 'admin' = 'proj'): string {
  return `sk-${kind}-${randomString(74, KEY_ALPHABET)}T3BlbkFJ${randomString(74, KEY_ALPHABET)}`;
}

export interface OpenAiServiceAccount {
  id: string;
  projectId: string;
  name: string;
  role: string;
  createdAt: number;
  apiKeyId: string;
  key: string;
}

const SERVICE_ACCOUNTS = /^\/organization\/projects\/([^/]+)\/service_accounts(?:\/([^/]+))?$/;

function maskOpenAiKey(key: string): string {
  return key.length <= 12 ? '*'.repeat(key.length) : `${key.slice(0, 8)}********${key.slice(-4)}`;
}

export class OpenAiFakeProvider extends OpenAiCompatibleFakeProvider {
  readonly id = 'openai' as const;
  /** Service-account keys minted through the admin API, in order. */
  readonly mintedKeys: string[] = [];
  /** Keys whose service account was deleted through the admin API, in order. */
  readonly retiredKeys: string[] = [];
  protected readonly displayName = 'OpenAI';
  protected readonly apiPrefix = '/v1';
  protected override readonly supportsEmbeddings = true;
  protected override readonly features: ReadonlySet<CompatFeature> = new Set<CompatFeature>([
    'responses',
    'completions',
    'stored-chat',
    'files',
    'batches',
    'transcriptions',
  ]);
  private managementKey: string | undefined;
  private readonly serviceAccounts = new Map<string, OpenAiServiceAccount>();

  constructor(options: FakeProviderOptions = {}) {
    super(options, OPENAI_DEFAULT_MODELS);
  }

  static start(options?: FakeProviderOptions): Promise<OpenAiFakeProvider> {
    return new OpenAiFakeProvider(options).start();
  }

  override reset(): void {
    super.reset();
    this.uploads.clear();
    this.vectorStores.clear();
    this.mintedKeys.length = 0;
    this.retiredKeys.length = 0;
    this.serviceAccounts.clear();
    this.managementKey = undefined;
  }

  /** An admin key (`sk-admin-…`), registered as the one that may call /v1/organization/*. */
  generateAdminKey(): string {
    const key = generateOpenAiKey('admin');
    this.setManagementKey(key);
    return key;
  }

  protected newKey(): string {
    return generateOpenAiKey('proj');
  }

  /** The admin key (`sk-admin-…`) that may call /v1/organization/*. */
  setManagementKey(key: string): void {
    this.managementKey = key;
  }

  setAdminKey(key: string): void {
    this.setManagementKey(key);
  }

  listServiceAccounts(): OpenAiServiceAccount[] {
    return [...this.serviceAccounts.values()].map((account) => ({ ...account }));
  }

  // ---- wire format ----------------------------------------------------------------------------

  protected override defaultHeaders(ctx: RequestContext): Record<string, string> {
    const organization = ctx.req.headers['openai-organization'];
    const project = ctx.req.headers['openai-project'];
    return {
      'x-request-id': `req_${randomString(32, '0123456789abcdef')}`,
      'openai-organization': typeof organization === 'string' ? organization : 'user-fake0001',
      ...(typeof project === 'string' ? { 'openai-project': project } : {}),
      'openai-processing-ms': '7',
      'openai-version': '2020-10-01',
    };
  }

  protected errorBody(error: CompatError): unknown {
    return {
      error: {
        message: error.message,
        type: error.type ?? null,
        param: error.param ?? null,
        code: error.code ?? null,
      },
    };
  }

  protected usageBody(usage: ReportedUsage): Record<string, unknown> {
    return {
      prompt_tokens: usage.input,
      completion_tokens: usage.output,
      total_tokens: usage.input + usage.output,
      prompt_tokens_details: { cached_tokens: usage.cached, audio_tokens: 0 },
      completion_tokens_details: {
        reasoning_tokens: 0,
        audio_tokens: 0,
        accepted_prediction_tokens: 0,
        rejected_prediction_tokens: 0,
      },
    };
  }

  protected modelObject(id: string): Record<string, unknown> {
    return { id, object: 'model', created: 1_700_000_000, owned_by: 'system' };
  }

  protected override usageNullOnChunks(request: { includeUsage: boolean }): boolean {
    return request.includeUsage;
  }

  protected authError(ctx: RequestContext, reason: 'missing' | 'unknown'): CompatError {
    if (reason === 'missing') {
      return {
        status: 401,
        message:
          "You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY), or as the password field (with blank username) if you're accessing the API from your browser and are prompted for a username. You can obtain an API key from https://platform.openai.com/account/api-keys.",
        type: 'invalid_request_error',
        code: null,
      };
    }
    return this.invalidKeyError(ctx.key ?? '');
  }

  protected behaviourError(ctx: RequestContext, behaviour: ErrorBehaviour): CompatError {
    switch (behaviour.kind) {
      case 'revoked':
        return this.invalidKeyError(ctx.key ?? '');
      case 'restricted':
        return this.missingScopeError(ctx.path === '/v1/models' ? 'api.model.read' : 'model.request');
      case 'rate_limited': {
        const retryAfter = this.retryAfterOf(behaviour);
        const model = isRecord(ctx.body) && typeof ctx.body.model === 'string' ? ctx.body.model : '';
        return {
          status: 429,
          message: `Rate limit reached for ${model || 'requests'} in organization user-fake0001 on requests per min (RPM): Limit ${this.rateLimits.requests}, Used ${this.rateLimits.requests}, Requested 1. Please try again in ${retryAfter}s. Visit https://platform.openai.com/account/rate-limits to learn more.`,
          type: 'requests',
          code: 'rate_limit_exceeded',
          headers: { 'retry-after': String(retryAfter), ...this.rateLimitHeaders(ctx, retryAfter) },
        };
      }
      case 'out_of_credit':
        return behaviour.variant === 'spend_limit'
          ? {
              status: 429,
              message:
                "You have exceeded your project's monthly spend limit. Raise the limit in the project settings or wait until it resets.",
              type: 'insufficient_quota',
              code: 'project_spend_limit_exceeded',
            }
          : {
              status: 429,
              message:
                'You exceeded your current quota, please check your plan and billing details. For more information on this error, read the docs: https://platform.openai.com/docs/guides/error-codes/api-errors.',
              type: 'insufficient_quota',
              code: 'insufficient_quota',
            };
      case 'failing':
        return this.serverError(behaviour.status ?? 500);
    }
  }

  // ---- admin API ------------------------------------------------------------------------------

  protected override isOrganizationPath(path: string): boolean {
    return path === '/v1/organization' || path.startsWith('/v1/organization/');
  }

  /** whisper-1 reports the audio's duration; the gpt-4o transcribe models report tokens. */
  protected override transcriptionUsage(
    model: string,
    usage: ReportedUsage,
    seconds: number,
  ): { body: Record<string, unknown>; usage: ReportedUsage } {
    if (model === 'whisper-1') {
      return { body: { type: 'duration', seconds }, usage: { input: seconds, output: 0, cached: 0 } };
    }
    return {
      body: {
        type: 'tokens',
        input_tokens: usage.input,
        input_token_details: { text_tokens: 0, audio_tokens: usage.input },
        output_tokens: usage.output,
        total_tokens: usage.input + usage.output,
      },
      usage,
    };
  }

  protected override async routeExtra(ctx: RequestContext, sub: string): Promise<boolean> {
    if (!sub.startsWith('/organization/')) {
      return this.routeOpenAiOnly(ctx, sub);
    }
    if (!this.checkAdmin(ctx)) {
      return true;
    }
    const match = SERVICE_ACCOUNTS.exec(sub);
    if (!match) {
      this.answerNotFound(ctx);
      return true;
    }
    const projectId = decodeURIComponent(match[1]);
    const accountId = match[2] === undefined ? undefined : decodeURIComponent(match[2]);
    if (accountId === undefined && ctx.method === 'POST') {
      this.createServiceAccount(ctx, projectId);
    } else if (accountId === undefined && ctx.method === 'GET') {
      const data = [...this.serviceAccounts.values()]
        .filter((account) => account.projectId === projectId)
        .map((account) => this.serviceAccountObject(account));
      this.sendJson(ctx, 200, {
        object: 'list',
        data,
        first_id: data.length > 0 ? data[0].id : null,
        last_id: data.length > 0 ? data[data.length - 1].id : null,
        has_more: false,
      });
    } else if (accountId !== undefined && (ctx.method === 'GET' || ctx.method === 'DELETE')) {
      const account = this.serviceAccounts.get(accountId);
      if (!account || account.projectId !== projectId) {
        this.sendError(ctx, {
          status: 404,
          message: `No such service account: ${accountId}`,
          type: 'invalid_request_error',
          code: null,
        });
      } else if (ctx.method === 'GET') {
        this.sendJson(ctx, 200, this.serviceAccountObject(account));
      } else {
        this.serviceAccounts.delete(account.id);
        this.deleteKey(account.key);
        this.retiredKeys.push(account.key);
        this.sendJson(ctx, 200, {
          object: 'organization.project.service_account.deleted',
          id: account.id,
          deleted: true,
        });
      }
    } else {
      this.answerNotFound(ctx);
    }
    return true;
  }

  private checkAdmin(ctx: RequestContext): boolean {
    if (ctx.key !== undefined && ctx.key === this.managementKey) {
      return true;
    }
    if (ctx.key === undefined) {
      this.answerAuthFailure(ctx, 'missing');
    } else if (this.hasKey(ctx.key)) {
      // A project or service-account key is real but lacks the organization scopes.
      this.sendError(
        ctx,
        this.missingScopeError(ctx.method === 'GET' ? 'api.management.read' : 'api.management.write'),
      );
    } else {
      this.sendError(ctx, this.invalidKeyError(ctx.key));
    }
    return false;
  }

  private createServiceAccount(ctx: RequestContext, projectId: string): void {
    const body = isRecord(ctx.body) ? ctx.body : {};
    if (typeof body.name !== 'string' || body.name.length === 0) {
      this.sendError(ctx, {
        status: 400,
        message: "Missing required parameter: 'name'.",
        type: 'invalid_request_error',
        param: 'name',
        code: 'missing_required_parameter',
      });
      return;
    }
    const account: OpenAiServiceAccount = {
      id: `svc_acct_${randomString(24, '0123456789abcdef')}`,
      projectId,
      name: body.name,
      role: 'member',
      createdAt: nowSeconds(),
      apiKeyId: `key_${randomString(16)}`,
      key: generateOpenAiKey('svcacct'),
    };
    this.serviceAccounts.set(account.id, account);
    this.setKey(account.key, { kind: 'valid' });
    this.mintedKeys.push(account.key);
    this.sendJson(ctx, 200, {
      ...this.serviceAccountObject(account),
      api_key: {
        object: 'organization.project.service_account.api_key',
        value: account.key,
        name: 'Secret Key',
        created_at: account.createdAt,
        id: account.apiKeyId,
      },
    });
  }

  private serviceAccountObject(account: OpenAiServiceAccount): Record<string, unknown> {
    return {
      object: 'organization.project.service_account',
      id: account.id,
      name: account.name,
      role: account.role,
      created_at: account.createdAt,
    };
  }

  // ---- moderations, images, speech, uploads, vector stores ------------------------------------

  /** OpenAI-only endpoints; true when one answered. */
  private async routeOpenAiOnly(ctx: RequestContext, sub: string): Promise<boolean> {
    const post = ctx.method === 'POST';
    let match: RegExpExecArray | null;
    if (post && sub === '/moderations') {
      await this.moderations(ctx);
    } else if (post && (sub === '/images/generations' || sub === '/images/edits' || sub === '/images/variations')) {
      await this.images(ctx, sub !== '/images/generations');
    } else if (post && sub === '/audio/speech') {
      await this.speech(ctx);
    } else if (post && sub === '/uploads') {
      await this.createUpload(ctx);
    } else if (post && (match = /^\/uploads\/([^/]+)\/(parts|complete|cancel)$/.exec(sub))) {
      await this.uploadStep(ctx, decodeURIComponent(match[1]), match[2] as 'parts' | 'complete' | 'cancel');
    } else if (sub === '/vector_stores' && (post || ctx.method === 'GET')) {
      await (post ? this.createVectorStore(ctx) : this.listObjects(ctx, this.vectorStores));
    } else if ((match = /^\/vector_stores\/([^/]+)$/.exec(sub))) {
      await this.storedObject(ctx, this.vectorStores, match[1], 'vector_store');
    } else if (post && (match = /^\/vector_stores\/([^/]+)\/search$/.exec(sub))) {
      await this.searchVectorStore(ctx, decodeURIComponent(match[1]));
    } else {
      return false;
    }
    return true;
  }

  private async moderations(ctx: RequestContext): Promise<void> {
    if (!(await this.admit(ctx, { generation: true }))) return;
    const body = isRecord(ctx.body) ? ctx.body : {};
    const inputs = Array.isArray(body.input) ? body.input : [body.input];
    const categories = ['harassment', 'hate', 'self-harm', 'sexual', 'violence'];
    const sent = this.sendJson(ctx, 200, {
      id: `modr-${randomString(24)}`,
      model: typeof body.model === 'string' ? body.model : 'omni-moderation-latest',
      results: inputs.map(() => ({
        flagged: false,
        categories: Object.fromEntries(categories.map((c) => [c, false])),
        category_scores: Object.fromEntries(categories.map((c) => [c, 0.0001])),
        category_applied_input_types: Object.fromEntries(categories.map((c) => [c, ['text']])),
      })),
    });
    // Moderations are free: the answer carries no usage, and none is billed.
    if (sent) ctx.record.reportedUsage = { input: 0, output: 0, cached: 0 };
  }

  /**
   * gpt-image models report token usage; DALL·E reports none (billed per image). Edits and
   * variations come as multipart forms.
   */
  private async images(ctx: RequestContext, multipart: boolean): Promise<void> {
    const behaviour = await this.admit(ctx, { generation: true });
    if (!behaviour) return;
    const fields: Record<string, unknown> = multipart ? (ctx.form?.fields ?? {}) : isRecord(ctx.body) ? ctx.body : {};
    if (multipart && !ctx.form?.files.some((file) => file.field === 'image' || file.field === 'image[]')) {
      this.sendError(ctx, {
        status: 400,
        message: "'image' is required (multipart/form-data).",
        type: 'invalid_request_error',
        param: 'image',
        code: null,
      });
      return;
    }
    const model = typeof fields.model === 'string' ? fields.model : 'dall-e-2';
    const count = Math.max(1, Math.min(10, Number(fields.n ?? 1) || 1));
    const prompt = typeof fields.prompt === 'string' ? fields.prompt : '';
    // A 1×1 transparent PNG: real bytes, small.
    const png = 'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAQAAAC1HAwCAAAAC0lEQVR42mNkYAAAAAYAAjCB0C8AAAAASUVORK5CYII=';
    const data = Array.from({ length: count }, () => ({ b64_json: png, revised_prompt: prompt }));
    const tokenPriced = model.startsWith('gpt-image');
    const usage: ReportedUsage = tokenPriced
      ? { ...this.usageFor(behaviour, [prompt], this.planReply(behaviour, undefined), model), cached: 0 }
      : { input: 0, output: count, cached: 0 };
    const body: Record<string, unknown> = { created: nowSeconds(), data };
    if (tokenPriced) {
      body.usage = {
        total_tokens: usage.input + usage.output,
        input_tokens: usage.input,
        output_tokens: usage.output,
        input_tokens_details: { text_tokens: usage.input, image_tokens: 0 },
      };
      Object.assign(body, { background: 'opaque', output_format: 'png', quality: 'medium', size: '1024x1024' });
    }
    if (this.sendJson(ctx, 200, body)) {
      ctx.record.reportedUsage = usage;
      this.bill(ctx, usage);
    }
  }

  /** Audio bytes (an MP3-looking body), streamed in a few pieces; the answer carries no usage. */
  private async speech(ctx: RequestContext): Promise<void> {
    if (!(await this.admit(ctx, { generation: true }))) return;
    const body = isRecord(ctx.body) ? ctx.body : {};
    if (typeof body.model !== 'string' || typeof body.input !== 'string' || typeof body.voice !== 'string') {
      this.sendError(ctx, {
        status: 400,
        message: "'model', 'input' and 'voice' are required.",
        type: 'invalid_request_error',
        param: 'input',
        code: null,
      });
      return;
    }
    const audio = Buffer.concat([
      Buffer.from('ID3\u0004\u0000\u0000\u0000\u0000\u0000\u0000', 'latin1'),
      Buffer.alloc(2048, 0xff),
    ]);
    const pieces = [audio.subarray(0, 700), audio.subarray(700, 1400), audio.subarray(1400)];
    const characters = [...body.input].length;
    if (await this.sendBinaryStream(ctx, 'audio/mpeg', pieces)) {
      // What Keyward can know: tts-1 is billed per character of input.
      ctx.record.reportedUsage = { input: characters, output: 0, cached: 0 };
    }
  }

  private readonly uploads = new Map<string, Record<string, unknown> & { parts: Buffer[] }>();
  private readonly vectorStores = new Map<string, Record<string, unknown>>();

  private async createUpload(ctx: RequestContext): Promise<void> {
    if (!(await this.admit(ctx, { generation: false }))) return;
    const body = isRecord(ctx.body) ? ctx.body : {};
    if (typeof body.filename !== 'string' || typeof body.purpose !== 'string' || typeof body.bytes !== 'number') {
      this.sendError(ctx, {
        status: 400,
        message: "'filename', 'purpose', 'bytes' and 'mime_type' are required.",
        type: 'invalid_request_error',
        param: 'filename',
        code: null,
      });
      return;
    }
    const upload = {
      id: `upload_${randomString(24)}`,
      object: 'upload',
      bytes: body.bytes,
      created_at: nowSeconds(),
      filename: body.filename,
      purpose: body.purpose,
      status: 'pending',
      expires_at: nowSeconds() + 3600,
      file: null as unknown,
      parts: [] as Buffer[],
    };
    this.uploads.set(upload.id, upload);
    const { parts: _parts, ...view } = upload;
    this.sendJson(ctx, 200, view);
  }

  private async uploadStep(ctx: RequestContext, id: string, step: 'parts' | 'complete' | 'cancel'): Promise<void> {
    if (!(await this.admit(ctx, { generation: false }))) return;
    const upload = this.uploads.get(id);
    if (!upload) {
      this.sendError(ctx, this.noSuch('upload', id));
      return;
    }
    if (step === 'parts') {
      const data = ctx.form?.files.find((file) => file.field === 'data');
      if (!data) {
        this.sendError(ctx, {
          status: 400,
          message: "'data' is required.",
          type: 'invalid_request_error',
          param: 'data',
          code: null,
        });
        return;
      }
      upload.parts.push(data.bytes);
      this.sendJson(ctx, 200, {
        id: `part_${randomString(24)}`,
        object: 'upload.part',
        created_at: nowSeconds(),
        upload_id: id,
      });
      return;
    }
    if (step === 'complete') {
      const bytes = Buffer.concat(upload.parts);
      const file = this.fileObject(String(upload.filename), bytes.length, String(upload.purpose));
      this.storedFiles.set(String(file.id), { object: file, bytes });
      Object.assign(upload, { status: 'completed', file });
    } else {
      upload.status = 'cancelled';
    }
    const { parts: _parts, ...view } = upload;
    this.sendJson(ctx, 200, view);
  }

  private async createVectorStore(ctx: RequestContext): Promise<void> {
    if (!(await this.admit(ctx, { generation: false }))) return;
    const body = isRecord(ctx.body) ? ctx.body : {};
    const fileIds = Array.isArray(body.file_ids) ? body.file_ids : [];
    const store = {
      id: `vs_${randomString(24)}`,
      object: 'vector_store',
      created_at: nowSeconds(),
      name: typeof body.name === 'string' ? body.name : null,
      usage_bytes: 0,
      file_counts: { in_progress: 0, completed: fileIds.length, failed: 0, cancelled: 0, total: fileIds.length },
      status: 'completed',
      expires_after: null,
      expires_at: null,
      last_active_at: nowSeconds(),
      metadata: isRecord(body.metadata) ? body.metadata : {},
    };
    this.vectorStores.set(store.id, store);
    this.sendJson(ctx, 200, store);
  }

  private async searchVectorStore(ctx: RequestContext, id: string): Promise<void> {
    if (!(await this.admit(ctx, { generation: false }))) return;
    if (!this.vectorStores.has(id)) {
      this.sendError(ctx, this.noSuch('vector_store', id));
      return;
    }
    const body = isRecord(ctx.body) ? ctx.body : {};
    this.sendJson(ctx, 200, {
      object: 'vector_store.search_results.page',
      search_query: [typeof body.query === 'string' ? body.query : ''],
      data: [],
      has_more: false,
      next_page: null,
    });
  }

  // ---- errors ---------------------------------------------------------------------------------

  private invalidKeyError(key: string): CompatError {
    return {
      status: 401,
      message: `Incorrect API key provided: ${maskOpenAiKey(key)}. You can find your API key at https://platform.openai.com/account/api-keys.`,
      type: 'invalid_request_error',
      code: 'invalid_api_key',
    };
  }

  private missingScopeError(scope: string): CompatError {
    return {
      status: 401,
      message: `You have insufficient permissions for this operation. Missing scopes: ${scope}. Check that you have the correct role in your organization (Reader, Writer, Owner) and project (Member, Owner), and if you're using a restricted API key, that it has the necessary scopes.`,
      type: 'invalid_request_error',
      code: 'missing_scope',
    };
  }

  private serverError(status: number): CompatError {
    const messages: Record<number, string> = {
      500: 'The server had an error while processing your request. Sorry about that!',
      502: 'Bad gateway.',
      503: 'The engine is currently overloaded, please try again later.',
    };
    return {
      status,
      message: messages[status] ?? STATUS_CODES[status] ?? 'Unexpected error.',
      type: status >= 500 ? 'server_error' : 'invalid_request_error',
      code: null,
    };
  }
}
