import { Body, Controller, Get, Inject, Param, Post, Query, Req, Res } from '@nestjs/common';
import { KEYWARD_CONFIG } from '../config/config.constants';
import type { KeywardConfig } from '../config/config';
import type { Request, Response } from 'express';
import type { AppAbility } from '../auth/abilities';
import { CheckPolicies } from '../auth/decorators';
import { Audit } from '../audit/audit.decorator';
import { isHtmx } from '../common/http';
import { pager } from '../common/pagination';
import { type FieldError, ProblemException, ValidationProblem } from '../common/problem';
import { validateForm } from '../common/validation';
import { flash, render } from '../common/views';
import { ProviderRegistry } from '../plugin-system/provider-registry';
import { BUDGET_PERIODS, LIMIT_UNITS } from '../limits/limits.types';
import type { AccessToken } from './access-token.entity';
import { statusOf } from './access-token.view';
import { TOKEN_SCOPES } from './access-tokens.constants';
import { tokenId } from './access-tokens.controller';
import { AccessTokensService } from './access-tokens.service';
import { CreateAccessTokenDto, UpdateAccessTokenDto } from './dto/create-access-token.dto';
import { ListAccessTokensQuery } from './dto/list-access-tokens.query';
import { RequiresMfa } from '../auth/mfa/requires-mfa.decorator';
import type { BudgetView } from './token-budgets';

/** What each grant lets a token do, for the checkboxes. */
const SCOPE_LABELS: Record<(typeof TOKEN_SCOPES)[number], string> = {
  files: 'Files (upload, list, read, delete)',
  uploads: 'Uploads (large files in parts)',
  batches: 'Batches',
  vector_stores: 'Vector stores',
  fine_tuning: 'Fine-tuning jobs',
  'usage:report': 'Report usage of direct provider calls (POST /api/usage)',
};

const numberFormat = new Intl.NumberFormat('en-US', { maximumFractionDigits: 6 });
const amount = (n: number, unit: string) =>
  unit === 'usd' ? `$${numberFormat.format(n)}` : `${numberFormat.format(n)} ${unit}`;

/** A budget as the page shows it: the bar, the numbers, the reset. */
function budgetRowOf(b: BudgetView) {
  return {
    ...b,
    text: `${amount(b.used, b.unit)} of ${amount(b.limit, b.unit)} ${b.period === 'total' ? 'in total' : b.period}`,
    reservedText: b.reserved > 0 ? `${amount(b.reserved, b.unit)} held by calls in flight` : '',
    high: b.limit * 0.8,
    over: b.used >= b.limit,
  };
}

/** The budget editor's rows (`unit_0`, `period_0`, `limit_0`, `remove_0`, …) as form values. */
interface BudgetFormRow {
  unit: string;
  period: string;
  limit: string;
  remove: boolean;
}

function budgetFormRows(body: Record<string, unknown>): BudgetFormRow[] {
  const count = Math.min(24, Math.max(0, Number.parseInt(String(body.rows ?? '0'), 10) || 0));
  return Array.from({ length: count }, (_, i) => ({
    unit: typeof body[`unit_${i}`] === 'string' ? (body[`unit_${i}`] as string) : '',
    period: typeof body[`period_${i}`] === 'string' ? (body[`period_${i}`] as string) : '',
    limit: typeof body[`limit_${i}`] === 'string' ? (body[`limit_${i}`] as string).trim() : '',
    remove: body[`remove_${i}`] === 'yes',
  }));
}

const blankRow = (): BudgetFormRow => ({ unit: 'usd', period: 'monthly', limit: '', remove: false });

/** A token as a table row shows it, with what the viewer may do to it. */
function rowOf(token: AccessToken, req: Request, budgets: BudgetView[] = []) {
  const status = statusOf(token);
  return {
    budgets: budgets.map(budgetRowOf),
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
    scopes: token.scopes ?? [],
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
    scopes: scopesOf(body),
  };
}

/** The ticked scope checkboxes. */
function scopesOf(body: Record<string, unknown>): string[] {
  return ([] as unknown[]).concat(body.scopes ?? []).filter((p): p is string => typeof p === 'string' && p !== '');
}

/** The console's Access tokens page. Same service as the JSON API. */
@Controller('admin/access-tokens')
export class AccessTokensAdminController {
  constructor(
    private readonly tokens: AccessTokensService,
    private readonly registry: ProviderRegistry,
    @Inject(KEYWARD_CONFIG) private readonly config: KeywardConfig,
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
    const budgets = await this.tokens.budgetsOf(tokens.map((t) => t.id));
    render(
      req,
      res,
      'tokens/index',
      {
        title: 'Access tokens',
        nav: 'tokens',
        rows: tokens.map((t) => rowOf(t, req, budgets.get(t.id))),
        pager: pager(query.page, query.pageSize, total),
        filters: { q: query.q, active: query.active === undefined ? undefined : String(query.active) },
        canCreate: (req.ability as AppAbility).can('create', 'AccessToken'),
        providerOptions: this.providerOptions([]),
        scopeOptions: scopeOptions([]),
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
    const scopes = fields.scopes as string[];
    const { dto, errors } = await validateForm(CreateAccessTokenDto, fields);
    if (errors.length > 0) {
      res.locals.auditReason = 'invalid form';
      return this.renderForm(req, res, { form, selected, scopes, errors: byFieldRoot(errors) }, 400);
    }
    try {
      const { accessToken, token } = await this.tokens.create(dto, req.authUser?.email ?? null);
      res.locals.auditTargetId = accessToken.id;
      // The page carries the token: no cache may keep it. Without htmx the page is answered
      // directly rather than through a redirect, so the token never sits in the session store.
      res.setHeader('Cache-Control', 'no-store');
      if (isHtmx(req)) res.setHeader('HX-Trigger', 'tokens-changed');
      return this.renderForm(
        req,
        res,
        { created: { name: accessToken.name, token, publicUrl: this.config.publicUrl } },
        201,
      );
    } catch (error) {
      if (error instanceof ValidationProblem) {
        res.locals.auditReason = error.problem.detail;
        return this.renderForm(req, res, { form, selected, scopes, errors: byFieldRoot(error.errors) }, 400);
      }
      throw error;
    }
  }

  /** One token: its grants and its budgets with spend against budget, both editable. */
  @Get(':id')
  @CheckPolicies((ability) => ability.can('read', 'AccessToken'))
  async show(@Req() req: Request, @Res() res: Response, @Param('id', tokenId) id: string) {
    const token = await this.tokens.get(id);
    await this.renderShow(req, res, token, {}, 200);
  }

  /** htmx swaps the scopes section; without JavaScript the page reloads with a message. */
  @Post(':id/scopes')
  @Audit('access-token.update', 'AccessToken')
  @CheckPolicies((ability) => ability.can('update', 'AccessToken'))
  async saveScopes(
    @Req() req: Request,
    @Res() res: Response,
    @Param('id', tokenId) id: string,
    @Body() body: Record<string, unknown>,
  ) {
    const token = await this.tokens.get(id);
    const scopes = scopesOf(body);
    const { dto, errors } = await validateForm(UpdateAccessTokenDto, { scopes });
    if (errors.length > 0) {
      res.locals.auditReason = 'invalid form';
      return this.section(req, res, token, 'scopes', { scopesError: errors[0].messages.join(' '), scopes }, 400);
    }
    try {
      const updated = await this.tokens.update(id, dto);
      const note = updated.scopes.length > 0 ? `Grants saved: ${updated.scopes.join(', ')}.` : 'Inference only.';
      if (!isHtmx(req)) {
        flash(req, 'success', note);
        return res.redirect(303, `/admin/access-tokens/${id}`);
      }
      await this.section(req, res, updated, 'scopes', { scopesNote: note });
    } catch (error) {
      if (!(error instanceof ProblemException)) throw error;
      res.locals.auditFailed = true;
      res.locals.auditReason = error.problem.detail ?? error.problem.title;
      await this.section(
        req,
        res,
        token,
        'scopes',
        { scopesError: error.problem.detail ?? error.problem.title, scopes },
        error.getStatus(),
      );
    }
  }

  /**
   * Saves the budget rows (ticked "remove" rows and empty new rows are left out). "Add a budget"
   * is a submit that only adds an empty row, so the editor works without JavaScript as well.
   */
  @Post(':id/budgets')
  @Audit('access-token.budgets', 'AccessToken')
  @CheckPolicies((ability) => ability.can('update', 'AccessToken'))
  async saveBudgets(
    @Req() req: Request,
    @Res() res: Response,
    @Param('id', tokenId) id: string,
    @Body() body: Record<string, unknown>,
  ) {
    const token = await this.tokens.get(id);
    const rows = budgetFormRows(body);
    if (body.add === 'yes') {
      res.locals.auditDetails = { note: 'added an empty budget row; nothing saved' };
      return this.section(req, res, token, 'budgets', { budgetRows: [...rows, blankRow()] });
    }
    const kept = rows.map((row, index) => ({ row, index })).filter(({ row }) => !row.remove && row.limit !== '');
    const input = kept.map(({ row }) => ({
      unit: row.unit,
      period: row.period,
      // The form's text becomes a number only when it is one; anything else fails validation.
      limit: /^\d+(\.\d+)?$/.test(row.limit) ? Number(row.limit) : row.limit,
    }));
    const { dto, errors } = await validateForm(UpdateAccessTokenDto, { budgets: input });
    const rowErrors = (list: FieldError[]) => {
      const out: Record<number, string> = {};
      for (const e of list) {
        const at = /^budgets\[(\d+)\]/.exec(e.field);
        const index = at ? kept[Number(at[1])]?.index : undefined;
        if (index !== undefined) out[index] = [out[index], ...e.messages].filter(Boolean).join(' ');
      }
      return out;
    };
    if (errors.length > 0) {
      res.locals.auditReason = 'invalid form';
      return this.section(req, res, token, 'budgets', { budgetRows: rows, rowErrors: rowErrors(errors) }, 400);
    }
    try {
      await this.tokens.update(id, dto);
      const note =
        input.length > 0 ? `Budgets saved (${input.length}).` : 'No budgets: the token is not limited by spend.';
      if (!isHtmx(req)) {
        flash(req, 'success', note);
        return res.redirect(303, `/admin/access-tokens/${id}`);
      }
      await this.section(req, res, await this.tokens.get(id), 'budgets', { budgetsNote: note });
    } catch (error) {
      if (!(error instanceof ProblemException)) throw error;
      res.locals.auditFailed = true;
      res.locals.auditReason = error.problem.detail ?? error.problem.title;
      const extra =
        error instanceof ValidationProblem
          ? { budgetRows: rows, rowErrors: rowErrors(error.errors) }
          : { budgetRows: rows, budgetsError: error.problem.detail ?? error.problem.title };
      await this.section(req, res, token, 'budgets', extra, error.getStatus());
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
        const budgets = (await this.tokens.budgetsOf([id])).get(id);
        return render(req, res, 'tokens/index', { row: rowOf(token, req, budgets) }, { partial: 'tokens/row' });
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
    const context = {
      ...data,
      providerOptions: this.providerOptions((data.selected as string[] | undefined) ?? []),
      scopeOptions: scopeOptions((data.scopes as string[] | undefined) ?? []),
    };
    if (isHtmx(req)) return render(req, res, 'tokens/index', context, { partial: 'tokens/form', status });
    await this.renderIndex(
      req,
      res,
      Object.assign(new ListAccessTokensQuery(), { page: 1, pageSize: 50 }),
      context,
      status,
    );
  }

  /** The token page, or (htmx) one of its sections. */
  private async section(
    req: Request,
    res: Response,
    token: AccessToken,
    name: 'scopes' | 'budgets',
    extra: Record<string, unknown>,
    status = 200,
  ) {
    if (!isHtmx(req)) return this.renderShow(req, res, token, extra, status);
    const context = await this.showContext(req, token, extra);
    render(req, res, 'tokens/show', context, { partial: `tokens/${name}`, status });
  }

  private async renderShow(
    req: Request,
    res: Response,
    token: AccessToken,
    extra: Record<string, unknown>,
    status: number,
  ) {
    render(req, res, 'tokens/show', await this.showContext(req, token, extra), { status });
  }

  private async showContext(req: Request, token: AccessToken, extra: Record<string, unknown>) {
    const budgets = ((await this.tokens.budgetsOf([token.id])).get(token.id) ?? []).map(budgetRowOf);
    const row = rowOf(token, req);
    const { budgetRows: _rows, rowErrors: _errors, ...rest } = extra;
    const scopes = (extra.scopes as string[] | undefined) ?? token.scopes ?? [];
    const budgetRows = (extra.budgetRows as BudgetFormRow[] | undefined) ?? [
      ...budgets.map((b) => ({ unit: b.unit, period: b.period, limit: String(b.limit), remove: false })),
      blankRow(),
    ];
    return {
      title: token.name,
      nav: 'tokens',
      token: row,
      budgets,
      canEdit: row.status !== 'revoked' && (req.ability as AppAbility).can('update', 'AccessToken'),
      scopeOptions: scopeOptions(scopes),
      budgetRows: budgetRows.map((r, i) => ({
        ...r,
        index: i,
        error: (extra.rowErrors as Record<number, string> | undefined)?.[i],
        units: LIMIT_UNITS.map((u) => ({ value: u, selected: u === r.unit })),
        periods: BUDGET_PERIODS.map((p) => ({ value: p, selected: p === r.period })),
      })),
      rowCount: budgetRows.length,
      ...rest,
      scopes,
    };
  }

  private providerOptions(selected: string[]) {
    return this.registry.ids().map((id) => ({
      id,
      name: this.registry.get(id)?.config.name ?? id,
      selected: selected.includes(id),
    }));
  }
}

function scopeOptions(selected: string[]) {
  return TOKEN_SCOPES.map((id) => ({ id, label: SCOPE_LABELS[id], selected: selected.includes(id) }));
}

/** Field errors by field, with `scopes[2]` shown at `scopes`. */
function byFieldRoot(errors: FieldError[]): Record<string, string> {
  return ValidationProblem.byField(errors.map((e) => ({ ...e, field: e.field.replace(/\[\d+\].*$/, '') })));
}
