import { Body, Controller, Get, HttpCode, Param, ParseUUIDPipe, Patch, Post, Put, Query } from '@nestjs/common';
import type { AuthUser } from '../auth/auth.types';
import { CheckPolicies, CurrentUser } from '../auth/decorators';
import { Audit } from '../audit/audit.decorator';
import { toAccessTokenView } from './access-token.view';
import { AccessTokensService } from './access-tokens.service';
import { ReplaceBudgetsDto } from './dto/budget.dto';
import { CreateAccessTokenDto, UpdateAccessTokenDto } from './dto/create-access-token.dto';
import { ListAccessTokensQuery } from './dto/list-access-tokens.query';
import { RequiresMfa } from '../auth/mfa/requires-mfa.decorator';

export const tokenId = new ParseUUIDPipe({ version: '4' });

/** Access tokens for applications. The token itself is in the create answer only, never again. */
@Controller('api/admin/access-tokens')
export class AccessTokensController {
  constructor(private readonly tokens: AccessTokensService) {}

  @Get()
  @CheckPolicies((ability) => ability.can('read', 'AccessToken'))
  async list(@Query() query: ListAccessTokensQuery) {
    const { tokens, total } = await this.tokens.list(query);
    const budgets = await this.tokens.budgetsOf(tokens.map((t) => t.id));
    return {
      tokens: tokens.map((t) => toAccessTokenView(t, budgets.get(t.id))),
      total,
      page: query.page,
      pageSize: query.pageSize,
    };
  }

  /** 201 with the view plus `token`: store it now, it cannot be shown again. */
  @Post()
  @Audit('access-token.create', 'AccessToken')
  @CheckPolicies((ability) => ability.can('create', 'AccessToken'))
  async create(@Body() dto: CreateAccessTokenDto, @CurrentUser() actor: AuthUser) {
    const { accessToken, token } = await this.tokens.create(dto, actor.email);
    return { ...(await this.view(accessToken.id)), token };
  }

  @Get(':id')
  @CheckPolicies((ability) => ability.can('read', 'AccessToken'))
  async get(@Param('id', tokenId) id: string) {
    return this.view(id);
  }

  /** Scopes and budgets; `budgets` replaces the whole set (the spend of a kept unit and period stays). */
  @Patch(':id')
  @Audit('access-token.update', 'AccessToken')
  @CheckPolicies((ability) => ability.can('update', 'AccessToken'))
  async update(@Param('id', tokenId) id: string, @Body() dto: UpdateAccessTokenDto) {
    await this.tokens.update(id, dto);
    return this.view(id);
  }

  @Put(':id/budgets')
  @Audit('access-token.budgets', 'AccessToken')
  @CheckPolicies((ability) => ability.can('update', 'AccessToken'))
  async replaceBudgets(@Param('id', tokenId) id: string, @Body() dto: ReplaceBudgetsDto) {
    await this.tokens.update(id, { budgets: dto.budgets });
    return this.view(id);
  }

  @Post(':id/revoke')
  @HttpCode(200)
  @Audit('access-token.revoke', 'AccessToken')
  @RequiresMfa()
  @CheckPolicies((ability) => ability.can('revoke', 'AccessToken'))
  async revoke(@Param('id', tokenId) id: string, @CurrentUser() actor: AuthUser) {
    await this.tokens.revoke(id, actor.email);
    return this.view(id);
  }

  private async view(id: string) {
    const token = await this.tokens.get(id);
    const budgets = await this.tokens.budgetsOf([id]);
    return toAccessTokenView(token, budgets.get(id));
  }
}
