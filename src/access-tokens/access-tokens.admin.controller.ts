import { Body, Controller, Get, Param, Post, Query, Req, Res } from '@nestjs/common';
import type { Request, Response } from 'express';
import type { AppAbility } from '../auth/abilities';
import { CheckPolicies } from '../auth/decorators';
import { Audit } from '../audit/audit.decorator';
import { isHtmx } from '../common/http';
import { pager } from '../common/pagination';
import { ProblemException, ValidationProblem } from '../common/problem';
import { validateForm } from '../common/validation';
import { flash, render } from '../common/views';
import { ProviderRegistry } from '../plugin-system/provider-registry';
import type { AccessToken } from './access-token.entity';
import { statusOf } from './access-token.view';
import { tokenId } from './access-tokens.controller';
import { AccessTokensService } from './access-tokens.service';
import { CreateAccessTokenDto } from './dto/create-access-token.dto';
import { ListAccessTokensQuery } from './dto/list-access-tokens.query';
import { RequiresMfa } from '../auth/mfa/requires-mfa.decorator';

/** A token as a table row shows it, with what the viewer may do to it. */
function rowOf(token: AccessToken, req: Request) {
  const status = statusOf(token);
  return {
    id: token.id,
    name: token.name,
    hint: token.tokenHint,
    providers: token.providers,
    models: token.models,
    rateLimitPerMinute: token.rateLimitPerMinute,
    allowedIps: token.allowedIps,
    expiresAt: token.expiresAt,
    lastUsedAt: token.lastUsedAt,
    revokedAt: token.revokedAt,
    status,
    canRevoke: status !== 'revoked' && (req.ability as AppAbility).can('revoke', 'AccessToken'),
  };
}

/** Free text (comma, space or newline separated) as a list; nothing entered means "all". */
function listOf(value: unknown): string[] | undefined {
  if (typeof value !== 'string') return undefined;
  const items = value
    .split(/[\s,]+/)
    .map((s) => s.trim())
    .filter(Boolean);
  return items.length > 0 ? items : undefined;
}

/** The create form's fields as the API's DTO takes them. */
function dtoFromForm(body: Record<string, unknown>): Record<string, unknown> {
  const providers = ([] as unknown[]).concat(body.providers ?? []).filter((p) => typeof p === 'string' && p !== '');
  const expires = typeof body.expiresAt === 'string' ? body.expiresAt.trim() : '';
  const rate = typeof body.rateLimitPerMinute === 'string' ? body.rateLimitPerMinute.trim() : '';
  return {
    name: body.name,
    providers: providers.length > 0 ? providers : undefined,
    models: listOf(body.models),
    // The form's date-time field has no zone; the label says UTC.
    expiresAt:
      expires === '' ? undefined : /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2})?$/.test(expires) ? `${expires}Z` : expires,
    rateLimitPerMinute: rate === '' ? undefined : rate,
    allowedIps: listOf(body.allowedIps),
  };
}

/** The console's Access tokens page. Same service as the JSON API. */
@Controller('admin/access-tokens')
export class AccessTokensAdminController {
  constructor(
    private readonly tokens: AccessTokensService,
    private readonly registry: ProviderRegistry,
  ) {}

  @Get()
  @CheckPolicies((ability) => ability.can('read', 'AccessToken'))
  async index(@Req() req: Request, @Res() res: Response, @Query() query: ListAccessTokensQuery) {
    await this.renderIndex(req, res, query, {}, 200);
  }

  private async renderIndex(
    req: Request,
    res: Response,
    query: ListAccessTokensQuery,
    extra: Record<string, unknown>,
    status: number,
  ) {
    const { tokens, total } = await this.tokens.list(query);
    render(
      req,
      res,
      'tokens/index',
      {
        title: 'Access tokens',
        nav: 'tokens',
        rows: tokens.map((t) => rowOf(t, req)),
        pager: pager(query.page, query.pageSize, total),
        filters: { q: query.q, active: query.active === undefined ? undefined : String(query.active) },
        canCreate: (req.ability as AppAbility).can('create', 'AccessToken'),
        providerOptions: this.providerOptions([]),
        ...extra,
      },
      { partial: 'tokens/table', status },
    );
  }

  @Post()
  @Audit('access-token.create', 'AccessToken')
  @CheckPolicies((ability) => ability.can('create', 'AccessToken'))
  async create(@Req() req: Request, @Res() res: Response, @Body() body: Record<string, unknown>) {
    const fields = dtoFromForm(body);
    const form = {
      name: body.name,
      models: body.models,
      expiresAt: body.expiresAt,
      rateLimitPerMinute: body.rateLimitPerMinute,
      allowedIps: body.allowedIps,
    };
    const selected = (fields.providers as string[] | undefined) ?? [];
    const { dto, errors } = await validateForm(CreateAccessTokenDto, fields);
    if (errors.length > 0) {
      res.locals.auditReason = 'invalid form';
      return this.renderForm(req, res, { form, selected, errors: ValidationProblem.byField(errors) }, 400);
    }
    try {
      const { accessToken, token } = await this.tokens.create(dto, req.authUser?.email ?? null);
      res.locals.auditTargetId = accessToken.id;
      // The page carries the token: no cache may keep it. Without htmx the page is answered
      // directly rather than through a redirect, so the token never sits in the session store.
      res.setHeader('Cache-Control', 'no-store');
      if (isHtmx(req)) res.setHeader('HX-Trigger', 'tokens-changed');
      return this.renderForm(req, res, { created: { name: accessToken.name, token } }, 201);
    } catch (error) {
      if (error instanceof ValidationProblem) {
        res.locals.auditReason = error.problem.detail;
        return this.renderForm(req, res, { form, selected, errors: ValidationProblem.byField(error.errors) }, 400);
      }
      throw error;
    }
  }

  /** htmx swaps the one row; without JavaScript the page reloads with a message. */
  @Post(':id/revoke')
  @Audit('access-token.revoke', 'AccessToken')
  @RequiresMfa()
  @CheckPolicies((ability) => ability.can('revoke', 'AccessToken'))
  async revoke(@Req() req: Request, @Res() res: Response, @Param('id', tokenId) id: string) {
    try {
      const token = await this.tokens.revoke(id, req.authUser?.email ?? null);
      if (isHtmx(req)) {
        return render(req, res, 'tokens/index', { row: rowOf(token, req) }, { partial: 'tokens/row' });
      }
      flash(req, 'success', `${token.name} (${token.tokenHint}) revoked; it stopped working at once.`);
      res.redirect(303, '/admin/access-tokens');
    } catch (error) {
      if (isHtmx(req) || !(error instanceof ProblemException)) throw error;
      res.locals.auditFailed = true;
      res.locals.auditReason = error.problem.detail ?? error.problem.title;
      flash(req, 'error', error.problem.detail ?? error.problem.title);
      res.redirect(303, '/admin/access-tokens');
    }
  }

  /** htmx gets the form alone; without JavaScript the whole page, errors beside the fields. */
  private async renderForm(req: Request, res: Response, data: Record<string, unknown>, status: number) {
    const context = { ...data, providerOptions: this.providerOptions((data.selected as string[] | undefined) ?? []) };
    if (isHtmx(req)) return render(req, res, 'tokens/index', context, { partial: 'tokens/form', status });
    await this.renderIndex(
      req,
      res,
      Object.assign(new ListAccessTokensQuery(), { page: 1, pageSize: 50 }),
      context,
      status,
    );
  }

  private providerOptions(selected: string[]) {
    return this.registry.ids().map((id) => ({
      id,
      name: this.registry.get(id)?.config.name ?? id,
      selected: selected.includes(id),
    }));
  }
}
