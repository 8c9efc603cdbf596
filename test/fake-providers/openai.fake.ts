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
import { CompatError, OpenAiCompatibleFakeProvider } from './openai-compatible';

export const OPENAI_DEFAULT_MODELS = ['gpt-5', 'gpt-5.4-mini', 'gpt-4o-mini', 'text-embedding-3-small'];

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

  protected override async routeExtra(ctx: RequestContext, sub: string): Promise<boolean> {
    if (!sub.startsWith('/organization/')) {
      return false;
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
