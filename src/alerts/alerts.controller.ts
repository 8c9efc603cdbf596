import { RequiresMfa } from '../auth/mfa/requires-mfa.decorator';
import { Body, Controller, Delete, Get, HttpCode, Param, ParseUUIDPipe, Patch, Post, Query } from '@nestjs/common';
import type { AuthUser } from '../auth/auth.types';
import { CheckPolicies, CurrentUser } from '../auth/decorators';
import { Audit } from '../audit/audit.decorator';
import { pager } from '../common/pagination';
import { AlertChannelsService } from './alert-channels.service';
import { AlertRulesService } from './alert-rules.service';
import { AlertsService } from './alerts.service';
import { ChannelTestService } from './channel-test.service';
import { CreateAlertChannelDto, UpdateAlertChannelDto } from './dto/alert-channel.dto';
import { CreateAlertRuleDto, UpdateAlertRuleDto } from './dto/alert-rule.dto';
import { ListAlertsQuery } from './dto/list-alerts.query';

export const alertId = new ParseUUIDPipe({ version: '4' });

/** Alert rules: what to watch. Owners and admins manage; operators and auditors read. */
@Controller('api/admin/alert-rules')
export class AlertRulesController {
  constructor(private readonly rules: AlertRulesService) {}

  @Get()
  @CheckPolicies((ability) => ability.can('read', 'Alert'))
  async list() {
    return { rules: await this.rules.list() };
  }

  @Post()
  @Audit('alert-rule.create', 'AlertRule')
  @CheckPolicies((ability) => ability.can('create', 'Alert'))
  create(@Body() dto: CreateAlertRuleDto, @CurrentUser() actor: AuthUser) {
    return this.rules.create(dto, actor.email);
  }

  @Get(':id')
  @CheckPolicies((ability) => ability.can('read', 'Alert'))
  get(@Param('id', alertId) id: string) {
    return this.rules.get(id);
  }

  @Patch(':id')
  @Audit('alert-rule.update', 'AlertRule')
  @CheckPolicies((ability) => ability.can('update', 'Alert'))
  update(@Param('id', alertId) id: string, @Body() dto: UpdateAlertRuleDto) {
    return this.rules.update(id, dto);
  }

  @Delete(':id')
  @HttpCode(204)
  @Audit('alert-rule.delete', 'AlertRule')
  @CheckPolicies((ability) => ability.can('delete', 'Alert'))
  async remove(@Param('id', alertId) id: string) {
    await this.rules.remove(id);
  }
}

/** Where alerts go. Secrets go in, masks come out. */
@Controller('api/admin/alert-channels')
export class AlertChannelsController {
  constructor(
    private readonly channels: AlertChannelsService,
    private readonly tester: ChannelTestService,
  ) {}

  @Get()
  @CheckPolicies((ability) => ability.can('read', 'Alert'))
  async list() {
    return { channels: await this.channels.list() };
  }

  /** 201 with the view; a webhook whose secret Keyward generated also gets `signingSecret`, once. */
  @RequiresMfa()
  @Post()
  @Audit('alert-channel.create', 'AlertChannel')
  @CheckPolicies((ability) => ability.can('create', 'Alert'))
  async create(@Body() dto: CreateAlertChannelDto, @CurrentUser() actor: AuthUser) {
    const { channel, signingSecret } = await this.channels.create(dto, actor.email);
    return signingSecret ? { ...channel, signingSecret } : channel;
  }

  @Get(':id')
  @CheckPolicies((ability) => ability.can('read', 'Alert'))
  get(@Param('id', alertId) id: string) {
    return this.channels.get(id);
  }

  @RequiresMfa()
  @Patch(':id')
  @Audit('alert-channel.update', 'AlertChannel')
  @CheckPolicies((ability) => ability.can('update', 'Alert'))
  update(@Param('id', alertId) id: string, @Body() dto: UpdateAlertChannelDto) {
    return this.channels.update(id, dto);
  }

  @RequiresMfa()
  @Delete(':id')
  @HttpCode(204)
  @Audit('alert-channel.delete', 'AlertChannel')
  @CheckPolicies((ability) => ability.can('delete', 'Alert'))
  async remove(@Param('id', alertId) id: string) {
    await this.channels.remove(id);
  }

  /** Sends a test message now and answers how it went (status, response code). */
  @Post(':id/test')
  @HttpCode(200)
  @Audit('alert-channel.test', 'AlertChannel')
  @CheckPolicies((ability) => ability.can('update', 'Alert'))
  test(@Param('id', alertId) id: string) {
    return this.tester.test(id);
  }

  @Get(':id/deliveries')
  @CheckPolicies((ability) => ability.can('read', 'Alert'))
  async deliveries(@Param('id', alertId) id: string) {
    return { deliveries: await this.channels.deliveries(id) };
  }
}

/** The alert history. Acknowledging and resolving need `update` on alerts. */
@Controller('api/admin/alerts')
export class AlertsController {
  constructor(private readonly alerts: AlertsService) {}

  @Get()
  @CheckPolicies((ability) => ability.can('read', 'Alert'))
  async list(@Query() query: ListAlertsQuery) {
    const { alerts, total } = await this.alerts.list(query);
    const { page, pageSize, pages } = pager(query.page, query.pageSize, total);
    return { alerts, total, page, pageSize, pages };
  }

  @Get(':id')
  @CheckPolicies((ability) => ability.can('read', 'Alert'))
  get(@Param('id', alertId) id: string) {
    return this.alerts.get(id);
  }

  @Post(':id/acknowledge')
  @HttpCode(200)
  @Audit('alert.acknowledge', 'Alert')
  @CheckPolicies((ability) => ability.can('update', 'Alert'))
  acknowledge(@Param('id', alertId) id: string, @CurrentUser() actor: AuthUser) {
    return this.alerts.acknowledge(id, actor.email);
  }

  @Post(':id/resolve')
  @HttpCode(200)
  @Audit('alert.resolve', 'Alert')
  @CheckPolicies((ability) => ability.can('update', 'Alert'))
  resolve(@Param('id', alertId) id: string, @CurrentUser() actor: AuthUser) {
    return this.alerts.resolve(id, actor.email);
  }
}
