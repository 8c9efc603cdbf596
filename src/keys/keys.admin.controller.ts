import { Body, Controller, Get, Param, Post, Query, Req, Res } from '@nestjs/common';
import type { Request, Response } from 'express';
import type { AppAbility } from '../auth/abilities';
import { CheckPolicies } from '../auth/decorators';
import { Audit } from '../audit/audit.decorator';
import { isHtmx, redirect } from '../common/http';
import { pager } from '../common/pagination';
import { type FieldError, type ProblemDetails, ProblemException, ValidationProblem } from '../common/problem';
import { fieldLabel, labelMessage } from '../common/field-labels';
import { validateForm } from '../common/validation';
import { flash, render } from '../common/views';
import { ProviderRegistry } from '../plugin-system/provider-registry';
import { RotateApiKeyDto } from '../rotation/dto/rotate-api-key.dto';
import { toRotationView } from '../rotation/rotation.view';
import { RotationService } from '../rotation/rotation.service';
import { type ApiKey, type StoredVerification, USAGE_PERIODS, USAGE_UNITS } from './api-key.entity';
import type { ApiKeyView, KeyStatus } from './api-key.view';
import { CreateApiKeyDto } from './dto/create-api-key.dto';
import { KEY_SORTS, ListApiKeysQuery } from './dto/list-api-keys.query';
import { SetLimitsDto } from './dto/set-limits.dto';
import { UpdateApiKeyDto } from './dto/update-api-key.dto';
import { keyId } from './keys.controller';
import { KeysService } from './keys.service';
import { RequiresMfa } from '../auth/mfa/requires-mfa.decorator';

const STATUS_LABELS: Record<KeyStatus, [label: string, cssClass: string]> = {
  active: ['active', 'status-ok'],
  revoked: ['revoked', 'status-off'],
  expired: ['expired', 'status-bad'],
  expiring: ['expiring soon', 'status-warn'],
  over_limit: ['over limit', 'status-bad'],
};

/** A provider's answer that says nothing about the key itself (it could not be checked). */
const NOT_CHECKED = new Set(['rate_limited', 'provider_error', 'timeout']);
const NOT_CHECKED_WHY: Record<string, string> = {
  rate_limited: 'it was rate limiting',
  provider_error: 'it answered with an error of its own',
  timeout: 'it did not answer in time',
};

const SORT_LABELS: Record<(typeof KEY_SORTS)[number], string> = {
  name: 'name',
  provider: 'provider',
  createdAt: 'added',
  expiresAt: 'expiry',
  lastUsed: 'last used',
  priority: 'priority',
};
const SORT_OPTIONS = KEY_SORTS.flatMap((s) => [
  { value: s, label: `${SORT_LABELS[s]} ↑` },
  { value: `-${s}`, label: `${SORT_LABELS[s]} ↓` },
]);

const PERIOD_WORDS: Record<string, string> = {
  daily: 'daily',
  weekly: 'weekly',
  monthly: 'monthly',
  never: 'in total',
};
const numberFormat = new Intl.NumberFormat('en-US', { maximumFractionDigits: 2 });

/** Fields of the "add a key" form that the page shows next to an input; others go on top. */
const CREATE_FIELDS = new Set([
  'provider',
  'name',
  'key',
  'organizationId',
  'projectId',
  'externalId',
  'managementKey',
  'expiresAt',
  'rotationSchedule',
  'priority',
  'weight',
  'limitValue',
  'limitUnit',
  'limitPeriod',
]);

type Section = 'editor' | 'validation' | 'limits' | 'rotation' | 'danger';

const str = (value: unknown): string | undefined => (typeof value === 'string' ? value : undefined);
/** An empty form field means "not given". Non-strings pass through for the DTO to refuse. */
const given = (value: unknown): unknown => (typeof value === 'string' && value.trim() === '' ? undefined : value);

/** `<input type="datetime-local">` holds no zone; the console's times are UTC. */
function fromDateTimeLocal(value: unknown): unknown {
  if (typeof value !== 'string') return value;
  const trimmed = value.trim();
  if (/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d{1,3})?)?$/.test(trimmed)) {
    const date = new Date(`${trimmed}Z`);
    if (!Number.isNaN(date.getTime())) return date.toISOString();
  }
  return trimmed;
}

function toDateTimeLocal(date: Date | null | undefined): string {
  return date ? date.toISOString().slice(0, 16) : '';
}

export function usageText(usage: ApiKeyView['usage']): string {
  if (usage.limit === null || usage.limit === undefined) return 'no limit';
  const unit = usage.unit === 'usd' ? 'USD' : (usage.unit ?? '');
  const period = PERIOD_WORDS[usage.period ?? ''] ?? usage.period ?? '';
  return `${numberFormat.format(usage.current)} / ${numberFormat.format(usage.limit)} ${unit} ${period}`.trim();
}

/** The provider's last answer about a key, ready for display (ValidationStatus). */
export function verdictOf(v: StoredVerification | undefined) {
  if (!v) return undefined;
  const [label, cssClass] = v.valid
    ? ['valid', 'status-ok']
    : NOT_CHECKED.has(v.errorType ?? '')
      ? ['not checked', 'status-warn']
      : ['invalid', 'status-bad'];
  const limits = v.details?.limits;
  // A check that never reached a verdict must not read as the provider's verdict.
  const summary =
    label === 'valid'
      ? v.errorType === 'rate_limited'
        ? 'The provider accepted the key; it is rate limiting it right now.'
        : 'The provider accepted the key.'
      : label === 'invalid'
        ? 'The provider refused the key.'
        : `The key could not be checked: ${NOT_CHECKED_WHY[v.errorType ?? ''] ?? 'the provider did not answer'}. Its state is unknown; try again later.`;
  return {
    valid: v.valid,
    label,
    summary,
    cssClass,
    errorType: v.errorType,
    reason: v.reason,
    checkedAt: v.checkedAt,
    organization: v.details?.organization,
    rateLimit: limits?.rateLimit ? numberFormat.format(limits.rateLimit) : undefined,
    quotaLimit: limits?.quotaLimit ? numberFormat.format(limits.quotaLimit) : undefined,
  };
}

/** Maps the DTO's nested `limit.*` errors onto the flat form fields. */
function createFormErrors(errors: FieldError[]) {
  const mapped = errors.map((e) => {
    const field = e.field.startsWith('limit')
      ? `limit${(e.field.split('.')[1] ?? 'value').replace(/^./, (c) => c.toUpperCase())}`
      : e.field;
    return { field, messages: e.messages };
  });
  return {
    errors: ValidationProblem.byField(mapped.filter((e) => CREATE_FIELDS.has(e.field))),
    otherErrors: mapped
      .filter((e) => !CREATE_FIELDS.has(e.field))
      .map((e) => `${fieldLabel(e.field)}: ${e.messages.map((m) => labelMessage(e.field, m)).join(' ')}`),
  };
}

/** A problem for display in a section: an answer with a 4xx status, whatever went wrong where. */
const inlineStatus = (problem: ProblemDetails) =>
  problem.status >= 400 && problem.status < 500 ? problem.status : 422;

/**
 * Console → Keys: the spec's KeyManagement (KeyList/KeyListItem/KeyActions, KeyEditor/KeyForm/
 * ValidationStatus, KeyRotation/RotationSchedule/RotationHistory). Same services and the same
 * permissions and audit actions as the JSON API; no page ever holds a secret, only masked hints.
 */
@Controller('admin/keys')
export class KeysAdminController {
  constructor(
    private readonly keys: KeysService,
    private readonly rotation: RotationService,
    private readonly registry: ProviderRegistry,
  ) {}

  // ---- KeyList ------------------------------------------------------------------------------

  @Get()
  @CheckPolicies((ability) => ability.can('read', 'ApiKey'))
  async index(@Req() req: Request, @Res() res: Response, @Query() raw: Record<string, unknown>) {
    const filters: Record<string, string> = {};
    for (const name of ['provider', 'active', 'q', 'expiring', 'sort', 'page', 'pageSize']) {
      const value = str(raw[name])?.trim();
      if (value) filters[name] = value;
    }
    const { dto: query, errors } = await validateForm(ListApiKeysQuery, filters);
    const { keys, total } = errors.length > 0 ? { keys: [], total: 0 } : await this.keys.list(query);
    render(
      req,
      res,
      'keys/index',
      {
        title: 'Keys',
        nav: 'keys',
        rows: keys.map((k) => this.rowOf(k, req)),
        pager: pager(errors.length > 0 ? 1 : query.page, errors.length > 0 ? 50 : query.pageSize, total),
        filters,
        filterErrors: errors.flatMap((e) => e.messages),
        providers: this.providerOptions(),
        sorts: SORT_OPTIONS,
        sort: filters.sort ?? '-createdAt',
        mayCreate: this.ability(req).can('create', 'ApiKey'),
      },
      { partial: 'keys/table', status: errors.length > 0 ? 400 : 200 },
    );
  }

  // ---- KeyForm (new key) ----------------------------------------------------------------------

  /** The form; for htmx (the provider select changed) only the provider-specific fields. */
  @Get('new')
  @CheckPolicies((ability) => ability.can('create', 'ApiKey'))
  newKey(@Req() req: Request, @Res() res: Response, @Query() raw: Record<string, unknown>) {
    const form = {
      provider: str(raw.provider)?.slice(0, 64),
      organizationId: str(raw.organizationId)?.slice(0, 200),
      projectId: str(raw.projectId)?.slice(0, 200),
    };
    render(req, res, 'keys/new', this.createContext(form, {}), { partial: 'keys/providerfields' });
  }

  @Post()
  @Audit('api-key.create', 'ApiKey')
  @CheckPolicies((ability) => ability.can('create', 'ApiKey'))
  async create(@Req() req: Request, @Res() res: Response, @Body() body: Record<string, unknown>) {
    // What the form shows again after an error: never the key or the management key.
    const form = {
      provider: str(body.provider),
      name: str(body.name),
      organizationId: str(body.organizationId),
      projectId: str(body.projectId),
      externalId: str(body.externalId),
      expiresAt: str(body.expiresAt),
      rotationSchedule: str(body.rotationSchedule),
      priority: str(body.priority),
      weight: str(body.weight),
      limitValue: str(body.limitValue),
      limitUnit: str(body.limitUnit),
      limitPeriod: str(body.limitPeriod),
    };
    const input = {
      provider: body.provider,
      name: body.name,
      key: body.key,
      organizationId: given(body.organizationId),
      projectId: given(body.projectId),
      externalId: given(body.externalId),
      managementKey: given(body.managementKey),
      expiresAt: fromDateTimeLocal(given(body.expiresAt)),
      rotationSchedule: given(body.rotationSchedule),
      priority: given(body.priority),
      weight: given(body.weight),
      limit:
        given(body.limitValue) === undefined
          ? undefined
          : { value: body.limitValue, unit: body.limitUnit, period: body.limitPeriod },
    };
    const { dto, errors } = await validateForm(CreateApiKeyDto, input);
    if (errors.length > 0) {
      res.locals.auditReason = 'invalid form';
      return this.renderCreateForm(req, res, form, errors);
    }
    try {
      const key = await this.keys.create(dto, this.ability(req), req.authUser?.email ?? null);
      res.locals.auditTargetId = key.id;
      flash(req, 'success', `Added ${key.name} (${key.secretHint}).`);
      redirect(req, res, `/admin/keys/${key.id}`);
    } catch (error) {
      if (!(error instanceof ValidationProblem)) throw error;
      res.locals.auditReason = error.problem.detail;
      this.renderCreateForm(req, res, form, error.errors);
    }
  }

  // ---- KeyEditor ------------------------------------------------------------------------------

  @Get(':id')
  @CheckPolicies((ability) => ability.can('read', 'ApiKey'))
  async show(@Req() req: Request, @Res() res: Response, @Param('id', keyId) id: string) {
    const key = await this.keys.get(id);
    render(req, res, 'keys/show', await this.pageContext(req, key, {}));
  }

  /** PATCH semantics: only the fields that differ from the stored key are sent to the service. */
  @Post(':id')
  @Audit('api-key.update', 'ApiKey')
  @CheckPolicies((ability) => ability.can('update', 'ApiKey'))
  async update(
    @Req() req: Request,
    @Res() res: Response,
    @Param('id', keyId) id: string,
    @Body() body: Record<string, unknown>,
  ) {
    const key = await this.keys.get(id);
    const edit = {
      name: str(body.name),
      organizationId: str(body.organizationId),
      projectId: str(body.projectId),
      externalId: str(body.externalId),
      expiresAt: str(body.expiresAt),
      rotationSchedule: str(body.rotationSchedule),
      priority: str(body.priority),
      weight: str(body.weight),
    };
    const input = this.changesOf(key, body);
    if (Object.keys(input).length === 0) {
      if (!isHtmx(req)) {
        flash(req, 'success', 'Nothing changed.');
        return res.redirect(303, `/admin/keys/${id}`);
      }
      return this.section(req, res, key, 'editor', { editNote: 'Nothing changed.' });
    }
    const { dto, errors } = await validateForm(UpdateApiKeyDto, input);
    if (errors.length > 0) {
      res.locals.auditReason = 'invalid form';
      return this.section(req, res, key, 'editor', { edit, editErrors: ValidationProblem.byField(errors) }, 400);
    }
    try {
      const updated = await this.keys.update(id, dto, this.ability(req));
      if (!isHtmx(req)) {
        flash(req, 'success', `Saved ${updated.name}.`);
        return res.redirect(303, `/admin/keys/${id}`);
      }
      // The schedule shows in the rotation section, the rest in the summary: both come along.
      await this.section(req, res, updated, 'editor', { editNote: 'Saved.', oobSummary: true, oobRotation: true });
    } catch (error) {
      await this.failed(req, res, error, id, 'editor', 'editError', { edit }, { key, errorsName: 'editErrors' });
    }
  }

  // ---- Limits ---------------------------------------------------------------------------------

  @Post(':id/limits')
  @Audit('api-key.limits', 'ApiKey')
  @CheckPolicies((ability) => ability.can('update', 'ApiKey'))
  async setLimits(
    @Req() req: Request,
    @Res() res: Response,
    @Param('id', keyId) id: string,
    @Body() body: Record<string, unknown>,
  ) {
    const key = await this.keys.get(id);
    const remove = body.remove === 'yes';
    const limitForm = {
      value: str(body.value),
      unit: str(body.unit),
      period: str(body.period),
      resetUsage: body.resetUsage === 'yes',
    };
    let input: Record<string, unknown> = { value: null };
    const errors: FieldError[] = [];
    if (!remove) {
      if (given(body.value) === undefined) {
        errors.push({ field: 'value', messages: ['enter a limit greater than 0, or remove the limit'] });
      }
      input = { value: body.value, unit: body.unit, period: body.period };
      if (limitForm.resetUsage) input.resetUsage = true;
    }
    const { dto, errors: dtoErrors } = await validateForm(SetLimitsDto, input);
    errors.push(...dtoErrors.filter((e) => !(e.field === 'value' && errors.length > 0)));
    if (errors.length > 0) {
      res.locals.auditReason = 'invalid form';
      return this.section(req, res, key, 'limits', { limitForm, limitErrors: ValidationProblem.byField(errors) }, 400);
    }
    try {
      const updated = await this.keys.setLimits(id, dto);
      const message = remove ? 'Limit removed.' : `Limit set: ${usageText(this.keys.view(updated).usage)}.`;
      if (!isHtmx(req)) {
        flash(req, 'success', message);
        return res.redirect(303, `/admin/keys/${id}`);
      }
      await this.section(req, res, updated, 'limits', { limitsNote: message, oobSummary: true });
    } catch (error) {
      await this.failed(
        req,
        res,
        error,
        id,
        'limits',
        'limitsError',
        { limitForm },
        { key, errorsName: 'limitErrors' },
      );
    }
  }

  // ---- ValidationStatus -------------------------------------------------------------------------

  /** Asks the provider now; htmx swaps the list row or the page's validation section. */
  @Post(':id/verify')
  @Audit('api-key.verify', 'ApiKey')
  @CheckPolicies((ability) => ability.can('verify', 'ApiKey'))
  async verify(
    @Req() req: Request,
    @Res() res: Response,
    @Param('id', keyId) id: string,
    @Body() body: Record<string, unknown>,
  ) {
    const fromList = body.from === 'list';
    const back = fromList ? '/admin/keys' : `/admin/keys/${id}`;
    try {
      await this.keys.verify(id);
      const key = await this.keys.get(id);
      if (!isHtmx(req)) {
        const verdict = verdictOf(key.lastVerification ?? undefined);
        const said = verdict ? `${verdict.label}${verdict.reason ? ` (${verdict.reason})` : ''}` : 'no answer';
        flash(req, verdict?.valid ? 'success' : 'error', `${key.name} (${key.secretHint}): ${said}.`);
        return res.redirect(303, back);
      }
      if (fromList) return render(req, res, 'keys/index', { row: this.rowOf(key, req) }, { partial: 'keys/row' });
      await this.section(req, res, key, 'validation', { verified: true });
    } catch (error) {
      if (!(error instanceof ProblemException)) throw error;
      this.markFailed(res, error);
      if (!isHtmx(req)) return this.flashAndGo(req, res, error, back);
      const key = await this.keys.get(id);
      if (fromList) {
        const row = { ...this.rowOf(key, req), error: error.problem };
        return render(req, res, 'keys/index', { row }, { partial: 'keys/row', status: inlineStatus(error.problem) });
      }
      await this.section(req, res, key, 'validation', { verifyError: error.problem }, inlineStatus(error.problem));
    }
  }

  // ---- KeyRotation ----------------------------------------------------------------------------

  @Post(':id/rotate')
  @Audit('api-key.rotate', 'ApiKey')
  @RequiresMfa()
  @CheckPolicies((ability) => ability.can('rotate', 'ApiKey'))
  async rotate(
    @Req() req: Request,
    @Res() res: Response,
    @Param('id', keyId) id: string,
    @Body() body: Record<string, unknown>,
  ) {
    const key = await this.keys.get(id);
    const mint = body.mode === 'mint';
    const rotateForm = {
      mode: mint ? 'mint' : 'key',
      externalId: str(body.externalId),
      gracePeriodSeconds: str(body.gracePeriodSeconds),
    };
    const errors: FieldError[] = [];
    const input: Record<string, unknown> = { gracePeriodSeconds: given(body.gracePeriodSeconds) };
    if (!mint) {
      if (given(body.key) === undefined) {
        errors.push({
          field: 'key',
          messages: [
            this.keys.view(key).canProvision
              ? 'enter the new key, or choose to have the provider mint one'
              : 'enter the new key you created at the provider',
          ],
        });
      }
      input.key = given(body.key);
      input.externalId = given(body.externalId);
    }
    const { dto, errors: dtoErrors } = await validateForm(RotateApiKeyDto, input);
    errors.push(...dtoErrors);
    if (errors.length > 0) {
      res.locals.auditReason = 'invalid form';
      return this.section(
        req,
        res,
        key,
        'rotation',
        { rotateForm, rotateErrors: ValidationProblem.byField(errors) },
        400,
      );
    }
    try {
      const result = await this.rotation.rotate(id, dto, this.ability(req), req.authUser?.email ?? null);
      // Hints, not `oldKey`/`newKey`: the audit log drops fields named like secrets (…key).
      res.locals.auditDetails = { oldHint: result.oldKey, newHint: result.newKey, source: result.rotation.source };
      if (!isHtmx(req)) {
        flash(req, 'success', `Rotated ${key.name}: ${result.oldKey} → ${result.newKey}.`);
        return res.redirect(303, `/admin/keys/${id}`);
      }
      const rotated = { ...toRotationView(result.rotation), graceUntil: result.expiresAt };
      await this.section(req, res, await this.keys.get(id), 'rotation', {
        rotated,
        oobSummary: true,
        oobValidation: true,
      });
    } catch (error) {
      await this.failed(
        req,
        res,
        error,
        id,
        'rotation',
        'rotateError',
        { rotateForm },
        { key, errorsName: 'rotateErrors' },
      );
    }
  }

  // ---- Revoke and delete (with confirmation) ---------------------------------------------------

  /** The confirmation step without JavaScript (htmx asks with hx-confirm instead). */
  @Get(':id/revoke')
  @CheckPolicies((ability) => ability.can('revoke', 'ApiKey'))
  async confirmRevoke(
    @Req() req: Request,
    @Res() res: Response,
    @Param('id', keyId) id: string,
    @Query('from') from: unknown,
  ) {
    const key = await this.keys.get(id);
    render(req, res, 'keys/confirm', {
      title: `Revoke ${key.name}`,
      nav: 'keys',
      key: this.rowOf(key, req),
      revoke: true,
      done: Boolean(key.revokedAt),
      action: `/admin/keys/${id}/revoke`,
      from: from === 'list' ? 'list' : 'page',
      cancel: from === 'list' ? '/admin/keys' : `/admin/keys/${id}`,
    });
  }

  @Post(':id/revoke')
  @Audit('api-key.revoke', 'ApiKey')
  @RequiresMfa()
  @CheckPolicies((ability) => ability.can('revoke', 'ApiKey'))
  async revoke(
    @Req() req: Request,
    @Res() res: Response,
    @Param('id', keyId) id: string,
    @Body() body: Record<string, unknown>,
  ) {
    const fromList = body.from === 'list';
    const back = fromList ? '/admin/keys' : `/admin/keys/${id}`;
    if (body.confirm !== 'yes') {
      res.locals.auditFailed = true;
      res.locals.auditReason = 'not confirmed';
      return redirect(req, res, `/admin/keys/${id}/revoke${fromList ? '?from=list' : ''}`);
    }
    try {
      const key = await this.keys.revoke(id, req.authUser?.email ?? null);
      if (isHtmx(req) && fromList) {
        return render(req, res, 'keys/index', { row: this.rowOf(key, req) }, { partial: 'keys/row' });
      }
      flash(req, 'success', `Revoked ${key.name} (${key.secretHint}); it will never be used again.`);
      redirect(req, res, back);
    } catch (error) {
      if (!(error instanceof ProblemException)) throw error;
      if (!isHtmx(req)) {
        this.markFailed(res, error);
        return this.flashAndGo(req, res, error, back);
      }
      if (fromList) {
        this.markFailed(res, error);
        const row = { ...this.rowOf(await this.keys.get(id), req), error: error.problem };
        return render(req, res, 'keys/index', { row }, { partial: 'keys/row', status: inlineStatus(error.problem) });
      }
      await this.failed(req, res, error, id, 'danger', 'dangerError');
    }
  }

  @Get(':id/delete')
  @CheckPolicies((ability) => ability.can('delete', 'ApiKey'))
  async confirmDelete(@Req() req: Request, @Res() res: Response, @Param('id', keyId) id: string) {
    const key = await this.keys.get(id);
    render(req, res, 'keys/confirm', {
      title: `Delete ${key.name}`,
      nav: 'keys',
      key: this.rowOf(key, req),
      revoke: false,
      blocked: !key.revokedAt,
      action: `/admin/keys/${id}/delete`,
      cancel: `/admin/keys/${id}`,
    });
  }

  @Post(':id/delete')
  @Audit('api-key.delete', 'ApiKey')
  @RequiresMfa()
  @CheckPolicies((ability) => ability.can('delete', 'ApiKey'))
  async remove(
    @Req() req: Request,
    @Res() res: Response,
    @Param('id', keyId) id: string,
    @Body() body: Record<string, unknown>,
  ) {
    if (body.confirm !== 'yes') {
      res.locals.auditFailed = true;
      res.locals.auditReason = 'not confirmed';
      return redirect(req, res, `/admin/keys/${id}/delete`);
    }
    try {
      // Described before it is gone, so the audit entry still names the key.
      const subject = await this.keys.describe(id);
      await this.keys.remove(id);
      if (subject) res.locals.auditDetails = { subject };
      flash(req, 'success', `Deleted ${String(subject?.name ?? 'the key')} and its history.`);
      redirect(req, res, '/admin/keys');
    } catch (error) {
      await this.failed(req, res, error, id, 'danger', 'dangerError');
    }
  }

  // ---- helpers --------------------------------------------------------------------------------

  private ability(req: Request): AppAbility {
    return req.ability as AppAbility;
  }

  /** A key as the list row and the key page show it, with what the viewer may do to it. */
  private rowOf(key: ApiKey, req: Request) {
    const view = this.keys.view(key);
    const ability = this.ability(req);
    const live = view.status !== 'revoked';
    const [statusLabel, statusClass] = STATUS_LABELS[view.status];
    const plugin = this.registry.get(key.provider);
    return {
      ...view,
      providerName: plugin?.config.name ?? key.provider,
      requiresOrg: plugin?.config.requiresOrg ?? false,
      providerCanMint: typeof plugin?.provisionKey === 'function',
      statusLabel,
      statusClass,
      revoked: !live,
      usageText: usageText(view.usage),
      verdict: verdictOf(view.validation),
      allow: {
        verify: live && ability.can('verify', 'ApiKey'),
        rotate: live && ability.can('rotate', 'ApiKey'),
        update: live && ability.can('update', 'ApiKey'),
        revoke: live && ability.can('revoke', 'ApiKey'),
        delete: !live && ability.can('delete', 'ApiKey'),
      },
    };
  }

  private providerOptions() {
    return this.registry.loaded().map(({ plugin }) => ({
      id: plugin.config.id,
      name: plugin.config.name,
      requiresOrg: plugin.config.requiresOrg,
      canMint: typeof plugin.provisionKey === 'function',
    }));
  }

  private createContext(form: Record<string, unknown>, data: Record<string, unknown>) {
    const providers = this.providerOptions();
    const names = (list: typeof providers) => list.map((p) => p.name).join(', ');
    return {
      title: 'Add a key',
      nav: 'keys',
      form: { ...form, limitUnit: form.limitUnit ?? 'tokens', limitPeriod: form.limitPeriod ?? 'monthly' },
      providers,
      chosen: providers.find((p) => p.id === form.provider),
      orgProviders: names(providers.filter((p) => p.requiresOrg)),
      mintProviders: names(providers.filter((p) => p.canMint)),
      units: USAGE_UNITS,
      periods: USAGE_PERIODS,
      errors: {},
      ...data,
    };
  }

  /** htmx gets the form alone; without JavaScript the whole page. Either way, 400. */
  private renderCreateForm(req: Request, res: Response, form: Record<string, unknown>, errors: FieldError[]) {
    const context = this.createContext(form, { ...createFormErrors(errors), retypeKey: true });
    render(req, res, 'keys/new', context, { partial: 'keys/form', status: 400 });
  }

  private async pageContext(req: Request, key: ApiKey, extra: Record<string, unknown>) {
    const row = this.rowOf(key, req);
    const rotations = (await this.rotation.list(key.id)).map(toRotationView);
    return {
      title: key.name,
      nav: 'keys',
      key: row,
      allow: row.allow,
      rotations,
      edit: {
        name: key.name,
        organizationId: key.organizationId ?? '',
        projectId: key.projectId ?? '',
        externalId: key.externalId ?? '',
        expiresAt: toDateTimeLocal(key.expiresAt),
        rotationSchedule: key.rotationSchedule ?? '',
        priority: String(key.priority),
        weight: String(key.weight),
      },
      limitForm: {
        value: key.usageLimit === null ? '' : String(key.usageLimit),
        unit: key.usageUnit ?? 'tokens',
        period: key.usagePeriod ?? 'monthly',
      },
      rotateForm: { mode: 'key' },
      units: USAGE_UNITS,
      periods: USAGE_PERIODS,
      ...extra,
    };
  }

  /** htmx gets one section of the key page; without JavaScript the whole page (e.g. with errors). */
  private async section(
    req: Request,
    res: Response,
    key: ApiKey,
    section: Section,
    extra: Record<string, unknown>,
    status = 200,
  ) {
    render(req, res, 'keys/show', await this.pageContext(req, key, extra), { partial: `keys/${section}`, status });
  }

  /** A service refusal (409 revoked, 422 needs a key, 502 provider…): inline, never a stack trace. */
  /**
   * A change of one section failed: field errors go back beside the fields (400, with what was
   * entered, given as `form`); other problems are shown in the section (htmx) or flashed.
   */
  private async failed(
    req: Request,
    res: Response,
    error: unknown,
    id: string,
    section: Section,
    errorName: string,
    extra: Record<string, unknown> = {},
    form?: { key: ApiKey; errorsName: string },
  ) {
    if (form && error instanceof ValidationProblem) {
      res.locals.auditReason = error.problem.detail;
      const errors = { [form.errorsName]: ValidationProblem.byField(error.errors) };
      return this.section(req, res, form.key, section, { ...extra, ...errors }, 400);
    }
    if (!(error instanceof ProblemException) || error.problem.status === 404) throw error;
    this.markFailed(res, error);
    if (!isHtmx(req)) return this.flashAndGo(req, res, error, `/admin/keys/${id}`);
    const key = await this.keys.get(id);
    await this.section(req, res, key, section, { ...extra, [errorName]: error.problem }, inlineStatus(error.problem));
  }

  private markFailed(res: Response, error: ProblemException) {
    res.locals.auditFailed = true;
    res.locals.auditReason = error.problem.detail
      ? `${error.problem.title}: ${error.problem.detail}`
      : error.problem.title;
  }

  private flashAndGo(req: Request, res: Response, error: ProblemException, location: string) {
    const { title, detail } = error.problem;
    flash(req, 'error', detail ? `${title}: ${detail}` : title);
    res.redirect(303, location);
  }

  /** The edit form's fields that differ from the key; empty clears an optional field. */
  private changesOf(key: ApiKey, body: Record<string, unknown>): Record<string, unknown> {
    const input: Record<string, unknown> = {};
    const text = (field: 'organizationId' | 'projectId' | 'externalId' | 'rotationSchedule') => {
      const value = body[field];
      if (value === undefined) return;
      if (typeof value !== 'string') {
        input[field] = value;
        return;
      }
      if (value.trim() === (key[field] ?? '')) return;
      input[field] = value.trim() === '' ? null : value;
    };
    if (body.name !== undefined && (typeof body.name !== 'string' || body.name.trim() !== key.name)) {
      input.name = body.name;
    }
    text('organizationId');
    text('projectId');
    text('externalId');
    text('rotationSchedule');
    if (body.expiresAt !== undefined) {
      const value = typeof body.expiresAt === 'string' ? body.expiresAt.trim() : body.expiresAt;
      if (value !== toDateTimeLocal(key.expiresAt)) input.expiresAt = value === '' ? null : fromDateTimeLocal(value);
    }
    for (const field of ['priority', 'weight'] as const) {
      const value = given(body[field]);
      if (value !== undefined && String(value).trim() !== String(key[field])) input[field] = value;
    }
    if (body.removeManagementKey === 'yes') {
      if (key.managementHint) input.managementKey = null;
    } else if (given(body.managementKey) !== undefined) {
      input.managementKey = body.managementKey;
    }
    return input;
  }
}
