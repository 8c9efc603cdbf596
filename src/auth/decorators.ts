import { createParamDecorator, ExecutionContext, SetMetadata } from '@nestjs/common';
import type { Request } from 'express';
import type { AppAbility } from './abilities';
import type { AuthUser } from './auth.types';

export const IS_PUBLIC = Symbol('IS_PUBLIC');
export const CHECK_POLICIES = Symbol('CHECK_POLICIES');

export type PolicyHandler = (ability: AppAbility) => boolean;

/** A route anyone may call (sign-in, health, assets). Everything else needs a signed-in user. */
export const Public = () => SetMetadata(IS_PUBLIC, true);

/**
 * The permissions a route needs. Every non-public route must carry it: the PoliciesGuard
 * denies a route that has none, so a forgotten decorator fails closed.
 */
export const CheckPolicies = (...handlers: PolicyHandler[]) => SetMetadata(CHECK_POLICIES, handlers);

export const CurrentUser = createParamDecorator((_data: unknown, ctx: ExecutionContext) => {
  return ctx.switchToHttp().getRequest<Request>().authUser as AuthUser;
});

export const CurrentAbility = createParamDecorator((_data: unknown, ctx: ExecutionContext) => {
  return ctx.switchToHttp().getRequest<Request>().ability as AppAbility;
});
