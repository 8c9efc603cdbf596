import { Body, Controller, Get, Param, Put, Res } from '@nestjs/common';
import type { Response } from 'express';
import type { AppAbility } from '../auth/abilities';
import type { AuthUser } from '../auth/auth.types';
import { CheckPolicies, CurrentAbility, CurrentUser } from '../auth/decorators';
import { Audit } from '../audit/audit.decorator';
import { keyId } from '../keys/keys.controller';
import { RotateApiKeyDto } from './dto/rotate-api-key.dto';
import { toRotationView } from './rotation.view';
import { RotationService } from './rotation.service';
import { RequiresMfa } from '../auth/mfa/requires-mfa.decorator';

@Controller('api/admin/api-keys')
export class RotationController {
  constructor(private readonly rotation: RotationService) {}

  /** The spec's RotateAPIKeyResponse `{oldKey, newKey, expiresAt}` (masked), plus the history entry. */
  @Put(':id/rotate')
  @Audit('api-key.rotate', 'ApiKey')
  @RequiresMfa()
  @CheckPolicies((ability) => ability.can('rotate', 'ApiKey'))
  async rotate(
    @Param('id', keyId) id: string,
    @Body() dto: RotateApiKeyDto,
    @CurrentAbility() ability: AppAbility,
    @CurrentUser() actor: AuthUser,
    @Res({ passthrough: true }) res: Response,
  ) {
    const result = await this.rotation.rotate(id, dto, ability, actor.email);
    res.locals.auditDetails = { oldHint: result.oldKey, newHint: result.newKey, source: result.rotation.source };
    return {
      oldKey: result.oldKey,
      newKey: result.newKey,
      expiresAt: result.expiresAt,
      rotation: toRotationView(result.rotation),
    };
  }

  @Get(':id/rotations')
  @CheckPolicies((ability) => ability.can('read', 'ApiKey'))
  async history(@Param('id', keyId) id: string) {
    const rotations = await this.rotation.list(id);
    return { rotations: rotations.map(toRotationView), total: rotations.length };
  }
}
