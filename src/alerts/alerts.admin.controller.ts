import { RequiresMfa } from '../auth/mfa/requires-mfa.decorator';
import { Body, Controller, Get, Param, Post, Query, Req, Res } from '@nestjs/common';
import type { Request, Response } from 'express';
import type { AppAbility } from '../auth/abilities';
import { CheckPolicies } from '../auth/decorators';
import { Audit } from '../audit/audit.decorator';
import { isHtmx } from '../common/http';
import { pager } from '../common/pagination';
import { type FieldError, ProblemException, ValidationProblem } from '../common/problem';
import { validateForm } from '../common/validation';
import { flash, render } from '../common/views';
import { AlertChannelsService, type AlertChannelView } from './alert-channels.service';
import { AlertRulesService } from './alert-rules.service';
import {
  ALERT_KINDS,
  ALERT_STATES,
  type AlertRule,
  CHANNEL_TYPES,
  COST_PERIODS,
  KIND_RULES,
  SCOPE_TYPES,
  SEVERITIES,
} from './alert.types';
import { alertId } from './alerts.controller';
import { AlertsService, type AlertView } from './alerts.service';
import { ChannelTestService } from './channel-test.service';
import { CreateAlertChannelDto } from './dto/alert-channel.dto';
import { CreateAlertRuleDto } from './dto/alert-rule.dto';
import { ListAlertsQuery } from './dto/list-alerts.query';

const SEVERITY_CLASS: Record<string, string> = { info: 'status-ok', warning: 'status-warn', critical: 'status-bad' };
const STATE_CLASS: Record<string, string> = { open: 'status-bad', acknowledged: 'status-warn', resolved: 'status-off' };

/** Form labels, so an inline error names what the person sees rather than a property. */
const RULE_LABELS: Record<string, string> = {
  name: 'Name',
  kind: 'Kind',
  severity: 'Severity',
  scopeType: 'Watches',
  scopeId: 'Provider, key or token id',
  thresholds: 'Thresholds',
  amountUsd: 'Amount (USD)',
  period: 'Period',
  errorRatePercent: 'Error rate (%)',
  windowMinutes: 'Window (minutes)',
  minRequests: 'Minimum requests',
  withinDays: 'Within (days)',
  channelIds: 'Channels',
};
const CHANNEL_LABELS: Record<string, string> = {
  name: 'Name',
  type: 'Type',
  url: 'Webhook URL',
  signingSecret: 'Signing secret',
  slackUrl: 'Slack webhook URL',
  smtpHost: 'SMTP host',
  smtpPort: 'SMTP port',
  smtpUser: 'SMTP user',
  smtpPassword: 'SMTP password',
  from: 'From',
  to: 'To',
};

const text = (v: unknown) => (typeof v === 'string' ? v.trim() : '');
const given = (v: unknown) => (text(v) === '' ? undefined : text(v));
const listOf = (v: unknown) => {
  const items = text(v)
    .split(/[\s,]+/)
    .filter(Boolean);
  return items.length ? items : undefined;
};
const checked = (v: unknown) => v === 'on' || v === 'true' || (Array.isArray(v) && v.includes('true'));

/** Messages keyed by field, worded with the form's labels (`Thresholds: each threshold …`). */
function labelled(errors: FieldError[], labels: Record<string, string>) {
  const byField: Record<string, string> = {};
  for (const e of errors) {
    const field = e.field.replace(/\[\d+\]$/, '').split('.')[0];
    const label = labels[field] ?? field;
    const words = e.messages.map((m) =>
      m.replace(new RegExp(`^(each )?${field}( entry)?\\b`), (_all, each) =>
        each ? `each ${label.toLowerCase()} entry` : label,
      ),
    );
    byField[field] = [byField[field], ...words].filter(Boolean).join(' ');
  }
  return byField;
}

function ruleFormToDto(body: Record<string, unknown>): Record<string, unknown> {
  const channelIds = ([] as unknown[]).concat(body.channelIds ?? []).filter((c) => typeof c === 'string' && c !== '');
  const scopeType = given(body.scopeType) ?? 'all';
  return {
    name: body.name,
    kind: given(body.kind),
    severity: given(body.severity),
    enabled: checked(body.enabled),
    scopeType,
    scopeId: scopeType === 'all' ? undefined : given(body.scopeId),
    thresholds: listOf(body.thresholds)?.map((t) => t.replace(/%$/, '')),
    amountUsd: given(body.amountUsd),
    period: given(body.period),
    errorRatePercent: given(body.errorRatePercent),
    windowMinutes: given(body.windowMinutes),
    minRequests: given(body.minRequests),
    withinDays: given(body.withinDays),
    channelIds,
  };
}

function channelFormToDto(body: Record<string, unknown>): Record<string, unknown> {
  const type = given(body.type);
  const dto: Record<string, unknown> = { name: body.name, type, reports: checked(body.reports) };
  if (type === 'webhook') Object.assign(dto, { url: given(body.url), signingSecret: given(body.signingSecret) });
  if (type === 'slack') Object.assign(dto, { slackUrl: given(body.slackUrl) });
  if (type === 'email') {
    Object.assign(dto, {
      smtpHost: given(body.smtpHost),
      smtpPort: given(body.smtpPort),
      smtpSecure: checked(body.smtpSecure),
      smtpUser: given(body.smtpUser),
      smtpPassword: given(body.smtpPassword),
      from: given(body.from),
      to: listOf(body.to),
    });
  }
  return dto;
}

/** The console's Alerts page: history with row actions, AlertConfig (rules) and channels. */
@Controller('admin/alerts')
export class AlertsAdminController {
  constructor(
    private readonly alerts: AlertsService,
    private readonly rules: AlertRulesService,
    private readonly channels: AlertChannelsService,
    private readonly tester: ChannelTestService,
  ) {}

  @Get()
  @CheckPolicies((ability) => ability.can('read', 'Alert'))
  async index(@Req() req: Request, @Res() res: Response, @Query() query: ListAlertsQuery) {
    await this.renderPage(req, res, query, {}, 200, 'alerts/table');
  }

  @Get('rules')
  @CheckPolicies((ability) => ability.can('read', 'Alert'))
  async rulesTable(@Req() req: Request, @Res() res: Response) {
    if (!isHtmx(req)) return res.redirect(303, '/admin/alerts#rules');
    render(req, res, 'alerts/index', await this.configContext(req), { partial: 'alerts/rules' });
  }

  @Get('channels')
  @CheckPolicies((ability) => ability.can('read', 'Alert'))
  async channelsTable(@Req() req: Request, @Res() res: Response) {
    if (!isHtmx(req)) return res.redirect(303, '/admin/alerts#channels');
    render(req, res, 'alerts/index', await this.configContext(req), { partial: 'alerts/channels' });
  }

  @Post(':id/acknowledge')
  @Audit('alert.acknowledge', 'Alert')
  @CheckPolicies((ability) => ability.can('update', 'Alert'))
  async acknowledge(@Req() req: Request, @Res() res: Response, @Param('id', alertId) id: string) {
    await this.rowAction(req, res, () => this.alerts.acknowledge(id, req.authUser?.email ?? null), 'acknowledged');
  }

  @Post(':id/resolve')
  @Audit('alert.resolve', 'Alert')
  @CheckPolicies((ability) => ability.can('update', 'Alert'))
  async resolve(@Req() req: Request, @Res() res: Response, @Param('id', alertId) id: string) {
    await this.rowAction(req, res, () => this.alerts.resolve(id, req.authUser?.email ?? null), 'resolved');
  }

  @Post('rules')
  @Audit('alert-rule.create', 'AlertRule')
  @CheckPolicies((ability) => ability.can('create', 'Alert'))
  async createRule(@Req() req: Request, @Res() res: Response, @Body() body: Record<string, unknown>) {
    const fields = ruleFormToDto(body);
    const { dto, errors } = await validateForm(CreateAlertRuleDto, fields);
    let failure: FieldError[] = errors;
    if (failure.length === 0) {
      try {
        const rule = await this.rules.create(dto, req.authUser?.email ?? null);
        res.locals.auditTargetId = rule.id;
        if (isHtmx(req)) {
          res.setHeader('HX-Trigger', 'rules-changed');
          return render(
            req,
            res,
            'alerts/index',
            { ...(await this.configContext(req)), ruleCreated: rule.name },
            { partial: 'alerts/ruleform', status: 201 },
          );
        }
        flash(req, 'success', `Rule "${rule.name}" created.`);
        return res.redirect(303, '/admin/alerts#rules');
      } catch (error) {
        if (!(error instanceof ValidationProblem)) throw error;
        failure = error.errors;
      }
    }
    res.locals.auditReason = 'invalid form';
    const extra = { ruleForm: body, ruleErrors: labelled(failure, RULE_LABELS) };
    const checked = fields.channelIds as string[];
    if (isHtmx(req)) {
      return render(
        req,
        res,
        'alerts/index',
        { ...(await this.configContext(req, checked)), ...extra },
        { partial: 'alerts/ruleform', status: 400 },
      );
    }
    await this.renderPage(
      req,
      res,
      Object.assign(new ListAlertsQuery(), { page: 1, pageSize: 50 }),
      { ...extra, checkedChannels: checked },
      400,
    );
  }

  @Post('rules/:id/toggle')
  @Audit('alert-rule.update', 'AlertRule')
  @CheckPolicies((ability) => ability.can('update', 'Alert'))
  async toggleRule(@Req() req: Request, @Res() res: Response, @Param('id', alertId) id: string) {
    const rule = await this.rules.get(id);
    const updated = await this.rules.update(id, { enabled: !rule.enabled });
    if (isHtmx(req)) {
      const context = await this.configContext(req);
      return render(
        req,
        res,
        'alerts/index',
        { ...context, rule: ruleRow(updated, context.channelNames, req) },
        { partial: 'alerts/rulerow' },
      );
    }
    flash(req, 'success', `Rule "${updated.name}" ${updated.enabled ? 'enabled' : 'disabled'}.`);
    res.redirect(303, '/admin/alerts#rules');
  }

  @Post('rules/:id/delete')
  @Audit('alert-rule.delete', 'AlertRule')
  @CheckPolicies((ability) => ability.can('delete', 'Alert'))
  async deleteRule(@Req() req: Request, @Res() res: Response, @Param('id', alertId) id: string) {
    const rule = await this.rules.get(id);
    await this.rules.remove(id);
    if (isHtmx(req)) return res.status(200).send('');
    flash(req, 'success', `Rule "${rule.name}" deleted.`);
    res.redirect(303, '/admin/alerts#rules');
  }

  @RequiresMfa()
  @Post('channels')
  @Audit('alert-channel.create', 'AlertChannel')
  @CheckPolicies((ability) => ability.can('create', 'Alert'))
  async createChannel(@Req() req: Request, @Res() res: Response, @Body() body: Record<string, unknown>) {
    const { dto, errors } = await validateForm(CreateAlertChannelDto, channelFormToDto(body));
    let failure: FieldError[] = errors;
    if (failure.length === 0) {
      try {
        const { channel, signingSecret } = await this.channels.create(dto, req.authUser?.email ?? null);
        res.locals.auditTargetId = channel.id;
        // The answer may carry a generated signing secret: no cache may keep it.
        res.setHeader('Cache-Control', 'no-store');
        if (isHtmx(req)) res.setHeader('HX-Trigger', 'channels-changed');
        const created = { name: channel.name, signingSecret };
        if (isHtmx(req)) {
          return render(
            req,
            res,
            'alerts/index',
            { ...(await this.configContext(req)), channelCreated: created },
            { partial: 'alerts/channelform', status: 201 },
          );
        }
        return this.renderPage(
          req,
          res,
          Object.assign(new ListAlertsQuery(), { page: 1, pageSize: 50 }),
          { channelCreated: created },
          201,
        );
      } catch (error) {
        if (!(error instanceof ValidationProblem)) throw error;
        failure = error.errors;
      }
    }
    res.locals.auditReason = 'invalid form';
    // Secrets typed into the form are not sent back into it.
    const { signingSecret: _s, slackUrl: _u, smtpPassword: _p, ...safe } = body;
    const extra = { channelForm: safe, channelErrors: labelled(failure, CHANNEL_LABELS) };
    if (isHtmx(req)) {
      return render(
        req,
        res,
        'alerts/index',
        { ...(await this.configContext(req)), ...extra },
        { partial: 'alerts/channelform', status: 400 },
      );
    }
    await this.renderPage(req, res, Object.assign(new ListAlertsQuery(), { page: 1, pageSize: 50 }), extra, 400);
  }

  @RequiresMfa()
  @Post('channels/:id/delete')
  @Audit('alert-channel.delete', 'AlertChannel')
  @CheckPolicies((ability) => ability.can('delete', 'Alert'))
  async deleteChannel(@Req() req: Request, @Res() res: Response, @Param('id', alertId) id: string) {
    const channel = await this.channels.get(id);
    await this.channels.remove(id);
    if (isHtmx(req)) return res.status(200).send('');
    flash(req, 'success', `Channel "${channel.name}" deleted.`);
    res.redirect(303, '/admin/alerts#channels');
  }

  @Post('channels/:id/test')
  @Audit('alert-channel.test', 'AlertChannel')
  @CheckPolicies((ability) => ability.can('update', 'Alert'))
  async testChannel(@Req() req: Request, @Res() res: Response, @Param('id', alertId) id: string) {
    let outcome: { kind: 'success' | 'error'; message: string };
    try {
      const result = await this.tester.test(id);
      outcome = result.delivered
        ? { kind: 'success', message: `Test delivered${result.statusCode ? ` (${result.statusCode})` : ''}.` }
        : { kind: 'error', message: `Test not delivered: ${result.error ?? result.status}; it will be retried.` };
    } catch (error) {
      if (!(error instanceof ProblemException)) throw error;
      outcome = { kind: 'error', message: error.problem.detail ?? error.problem.title };
    }
    if (outcome.kind === 'error') res.locals.auditFailed = true;
    if (isHtmx(req)) {
      const context = await this.configContext(req);
      const channel = await this.channels.get(id);
      return render(
        req,
        res,
        'alerts/index',
        { ...context, channel: channelRow(channel, req), outcome },
        { partial: 'alerts/channelrow' },
      );
    }
    flash(req, outcome.kind, outcome.message);
    res.redirect(303, '/admin/alerts#channels');
  }

  private async rowAction(req: Request, res: Response, action: () => Promise<AlertView>, done: string) {
    try {
      const alert = await action();
      if (isHtmx(req)) {
        res.setHeader('HX-Trigger', 'alerts-changed');
        return render(req, res, 'alerts/index', { alert: alertRow(alert, req) }, { partial: 'alerts/row' });
      }
      flash(req, 'success', `Alert ${done}.`);
      res.redirect(303, '/admin/alerts');
    } catch (error) {
      if (isHtmx(req) || !(error instanceof ProblemException)) throw error;
      res.locals.auditFailed = true;
      res.locals.auditReason = error.problem.detail ?? error.problem.title;
      flash(req, 'error', error.problem.detail ?? error.problem.title);
      res.redirect(303, '/admin/alerts');
    }
  }

  private async renderPage(
    req: Request,
    res: Response,
    query: ListAlertsQuery,
    extra: Record<string, unknown>,
    status: number,
    partial?: string,
  ) {
    const [{ alerts, total }, config] = await Promise.all([
      this.alerts.list(query),
      this.configContext(req, (extra.checkedChannels as string[] | undefined) ?? []),
    ]);
    render(
      req,
      res,
      'alerts/index',
      {
        title: 'Alerts',
        nav: 'alerts',
        rows: alerts.map((a) => alertRow(a, req)),
        pager: pager(query.page, query.pageSize, total),
        filters: { state: query.state, severity: query.severity, kind: query.kind, from: query.from, to: query.to },
        states: ALERT_STATES,
        ...config,
        ...extra,
      },
      { partial, status },
    );
  }

  /** Rules, channels and the form's choices; `checkedChannels` are ticked again after an error. */
  private async configContext(req: Request, checkedChannels: string[] = []) {
    const ability = req.ability as AppAbility;
    const [rules, channels] = await Promise.all([this.rules.list(), this.channels.list()]);
    const channelNames = new Map(channels.map((c) => [c.id, c.name]));
    return {
      rules: rules.map((r) => ruleRow(r, channelNames, req)),
      channels: channels.map((c) => ({ ...channelRow(c, req), checked: checkedChannels.includes(c.id) })),
      channelNames,
      canManage: ability.can('create', 'Alert'),
      kinds: ALERT_KINDS.map((k) => ({
        value: k,
        label: KIND_RULES[k].label,
        scopes: KIND_RULES[k].scopes.join(', '),
      })),
      severities: SEVERITIES,
      scopeTypes: SCOPE_TYPES,
      periods: COST_PERIODS,
      channelTypes: CHANNEL_TYPES,
    };
  }
}

function alertRow(a: AlertView, req: Request) {
  const ability = req.ability as AppAbility;
  return {
    ...a,
    severityClass: SEVERITY_CLASS[a.severity] ?? '',
    stateClass: STATE_CLASS[a.state] ?? '',
    canAcknowledge: a.state === 'open' && ability.can('update', 'Alert'),
    canResolve: a.state !== 'resolved' && ability.can('update', 'Alert'),
  };
}

function ruleRow(r: AlertRule, channelNames: Map<string, string>, req: Request) {
  const ability = req.ability as AppAbility;
  const p = r.params;
  const settings = [
    p.thresholds ? `at ${p.thresholds.join(' / ')} %` : '',
    p.amountUsd !== undefined ? `$${p.amountUsd} ${p.period ?? ''}` : '',
    p.errorRatePercent !== undefined
      ? `≥ ${p.errorRatePercent} % over ${p.windowMinutes} min, ≥ ${p.minRequests} requests`
      : '',
    p.withinDays !== undefined ? `within ${p.withinDays} days` : '',
  ].filter(Boolean);
  return {
    ...r,
    kindLabel: KIND_RULES[r.kind].label,
    scope: r.scopeType === 'all' ? 'all' : `${r.scopeType} ${r.scopeId}`,
    settings: settings.join('; '),
    channelList: r.channelIds.map((id) => channelNames.get(id) ?? id),
    severityClass: SEVERITY_CLASS[r.severity] ?? '',
    canManage: ability.can('update', 'Alert'),
  };
}

function channelRow(c: AlertChannelView, req: Request) {
  const ability = req.ability as AppAbility;
  const target =
    c.type === 'webhook' ? c.url : c.type === 'email' ? `${(c.to ?? []).join(', ')} via ${c.smtpHost}` : c.secretHint;
  const deliveryClass = { delivered: 'status-ok', pending: 'status-warn', failed: 'status-bad' }[
    c.lastDelivery?.status ?? ''
  ];
  return { ...c, target, deliveryClass, canManage: ability.can('update', 'Alert') };
}
