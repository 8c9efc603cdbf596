import { Body, Controller, Get, HttpCode, Param, ParseUUIDPipe, Patch, Post, Query } from '@nestjs/common';
import type { AppAbility } from '../abilities';
import type { AuthUser } from '../auth.types';
import { CheckPolicies, CurrentAbility, CurrentUser } from '../decorators';
import { Audit } from '../../audit/audit.decorator';
import { CreateUserDto } from './dto/create-user.dto';
import { ListUsersQuery } from './dto/list-users.query';
import { UpdateUserDto } from './dto/update-user.dto';
import { toUserView } from './user.view';
import { UsersService } from './users.service';
import { RequiresMfa } from '../mfa/requires-mfa.decorator';

export const uuid = new ParseUUIDPipe({ version: '4' });

@Controller('api/admin/users')
export class UsersController {
  constructor(private readonly users: UsersService) {}

  @Get()
  @CheckPolicies((ability) => ability.can('read', 'User'))
  async list(@Query() query: ListUsersQuery) {
    const { users, total } = await this.users.list(query);
    return { users: users.map(toUserView), total, page: query.page, pageSize: query.pageSize };
  }

  @Get(':id')
  @CheckPolicies((ability) => ability.can('read', 'User'))
  async get(@Param('id', uuid) id: string) {
    return toUserView(await this.users.get(id));
  }

  @Post()
  @Audit('user.create', 'User')
  @CheckPolicies((ability) => ability.can('create', 'User'))
  async create(@Body() dto: CreateUserDto, @CurrentAbility() ability: AppAbility) {
    return toUserView(await this.users.create(dto, ability));
  }

  /** Change role and/or disable (`{"disabled": true}`) or re-enable a user. */
  @Patch(':id')
  @Audit('user.update', 'User')
  @RequiresMfa()
  @CheckPolicies((ability) => ability.can('update', 'User'))
  async update(
    @Param('id', uuid) id: string,
    @Body() dto: UpdateUserDto,
    @CurrentAbility() ability: AppAbility,
    @CurrentUser() actor: AuthUser,
  ) {
    return toUserView(await this.users.update(id, dto, ability, actor.id));
  }

  @Post(':id/disable')
  @HttpCode(200)
  @Audit('user.disable', 'User')
  @RequiresMfa()
  @CheckPolicies((ability) => ability.can('disable', 'User'))
  async disable(@Param('id', uuid) id: string, @CurrentAbility() ability: AppAbility, @CurrentUser() actor: AuthUser) {
    return toUserView(await this.users.update(id, { disabled: true }, ability, actor.id));
  }

  @Post(':id/enable')
  @HttpCode(200)
  @Audit('user.enable', 'User')
  @CheckPolicies((ability) => ability.can('update', 'User'))
  async enable(@Param('id', uuid) id: string, @CurrentAbility() ability: AppAbility, @CurrentUser() actor: AuthUser) {
    return toUserView(await this.users.update(id, { disabled: false }, ability, actor.id));
  }
}
