import { Body, Controller, Delete, Get, HttpCode, Param, ParseUUIDPipe, Patch, Post, Put, Query } from '@nestjs/common';
import type { AppAbility } from '../auth/abilities';
import type { AuthUser } from '../auth/auth.types';
import { CheckPolicies, CurrentAbility, CurrentUser } from '../auth/decorators';
import { Audit } from '../audit/audit.decorator';
import { CreateApiKeyDto } from './dto/create-api-key.dto';
import { ListApiKeysQuery } from './dto/list-api-keys.query';
import { SetLimitsDto } from './dto/set-limits.dto';
import { UpdateApiKeyDto } from './dto/update-api-key.dto';
import { KeysService } from './keys.service';
import { RequiresMfa } from '../auth/mfa/requires-mfa.decorator';

export const keyId = new ParseUUIDPipe({ version: '4' });

/** The spec's key management endpoints. Every answer shows keys masked; none holds a secret. */
@Controller('api/admin/api-keys')
export class KeysController {
  constructor(private readonly keys: KeysService) {}

  /** The spec's ListAPIKeysResponse `{keys, total}`, plus the page asked for. */
  @Get()
  @CheckPolicies((ability) => ability.can('read', 'ApiKey'))
  async list(@Query() query: ListApiKeysQuery) {
    const { keys, total } = await this.keys.list(query);
    return { keys: keys.map((k) => this.keys.view(k)), total, page: query.page, pageSize: query.pageSize };
  }

  @Post()
  @Audit('api-key.create', 'ApiKey')
  @CheckPolicies((ability) => ability.can('create', 'ApiKey'))
  async create(@Body() dto: CreateApiKeyDto, @CurrentAbility() ability: AppAbility, @CurrentUser() actor: AuthUser) {
    return this.keys.view(await this.keys.create(dto, ability, actor.email));
  }

  @Get(':id')
  @CheckPolicies((ability) => ability.can('read', 'ApiKey'))
  async get(@Param('id', keyId) id: string) {
    return this.keys.view(await this.keys.get(id));
  }

  @Patch(':id')
  @Audit('api-key.update', 'ApiKey')
  @CheckPolicies((ability) => ability.can('update', 'ApiKey'))
  async update(@Param('id', keyId) id: string, @Body() dto: UpdateApiKeyDto, @CurrentAbility() ability: AppAbility) {
    return this.keys.view(await this.keys.update(id, dto, ability));
  }

  @Put(':id/limits')
  @Audit('api-key.limits', 'ApiKey')
  @CheckPolicies((ability) => ability.can('update', 'ApiKey'))
  async setLimits(@Param('id', keyId) id: string, @Body() dto: SetLimitsDto) {
    return this.keys.view(await this.keys.setLimits(id, dto));
  }

  @Post(':id/revoke')
  @HttpCode(200)
  @Audit('api-key.revoke', 'ApiKey')
  @RequiresMfa()
  @CheckPolicies((ability) => ability.can('revoke', 'ApiKey'))
  async revoke(@Param('id', keyId) id: string, @CurrentUser() actor: AuthUser) {
    return this.keys.view(await this.keys.revoke(id, actor.email));
  }

  @Delete(':id')
  @HttpCode(204)
  @Audit('api-key.delete', 'ApiKey')
  @RequiresMfa()
  @CheckPolicies((ability) => ability.can('delete', 'ApiKey'))
  async remove(@Param('id', keyId) id: string) {
    await this.keys.remove(id);
  }

  /** The spec's VerifyAPIKeyResponse, as the provider answered just now; also stored on the key. */
  @Post(':id/verify')
  @HttpCode(200)
  @Audit('api-key.verify', 'ApiKey')
  @CheckPolicies((ability) => ability.can('verify', 'ApiKey'))
  async verify(@Param('id', keyId) id: string) {
    return this.keys.verify(id);
  }
}
