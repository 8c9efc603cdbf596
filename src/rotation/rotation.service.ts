import { Inject, Injectable, Logger } from '@nestjs/common';
import { InjectDataSource } from '@nestjs/typeorm';
import { DataSource } from 'typeorm';
import type { AppAbility } from '../auth/abilities';
import { conflict, type FieldError, notFound, ProblemException, ValidationProblem } from '../common/problem';
import { KEYWARD_CONFIG } from '../config/config.constants';
import type { KeywardConfig } from '../config/config';
import { ApiKey } from '../keys/api-key.entity';
import { externalIdError, KEY_EVENTS, KeysService, refuseProviderIdentityChange } from '../keys/keys.service';
import { ProviderRequestError, type ProviderPlugin } from '../plugin-system/provider-plugin';
import { ProviderRegistry } from '../plugin-system/provider-registry';
import type { RotateApiKeyDto } from './dto/rotate-api-key.dto';
import { KeyRotation, type RotationTrigger } from './key-rotation.entity';
import { nextRotation } from './rotation-schedule';

/** The spec's RotateAPIKeyResponse: both keys masked; `expiresAt` is when the old one is retired. */
export interface RotationResult {
  oldKey: string;
  newKey: string;
  expiresAt: Date;
  rotation: KeyRotation;
}

const MAX_RETIRE_ATTEMPTS = 5;

function reasonOf(error: unknown): string {
  if (error instanceof ProviderRequestError) return error.message;
  // Plugin errors are redacted by the plugin; anything else is reduced to its class name.
  return error instanceof Error ? `${error.name}: ${error.message}`.slice(0, 300) : 'unknown error';
}

/**
 * Manual and scheduled rotation. The new secret replaces the old one under the same key id at
 * once (so a rotation prompted by a leak takes effect immediately); the old secret stays valid
 * at the provider for the grace period, then Keyward retires it there where the plugin can.
 */
@Injectable()
export class RotationService {
  private readonly logger = new Logger(RotationService.name);

  constructor(
    @InjectDataSource() private readonly dataSource: DataSource,
    private readonly keys: KeysService,
    private readonly registry: ProviderRegistry,
    @Inject(KEYWARD_CONFIG) private readonly config: KeywardConfig,
  ) {}

  private get history() {
    return this.dataSource.getRepository(KeyRotation);
  }

  async list(keyId: string): Promise<KeyRotation[]> {
    await this.keys.get(keyId);
    return this.history.find({ where: { keyId }, order: { createdAt: 'DESC' }, take: 100 });
  }

  async rotate(
    keyId: string,
    dto: RotateApiKeyDto,
    ability: AppAbility | null,
    actor: string | null,
    trigger: RotationTrigger = 'manual',
  ): Promise<RotationResult> {
    refuseProviderIdentityChange({ externalId: dto.externalId }, ability);
    const key = await this.keys.get(keyId);
    this.keys.refuseIfRevoked(key, 'rotated');
    const plugin = this.registry.get(key.provider);
    if (!plugin) {
      throw new ProblemException(
        503,
        'provider-unavailable',
        'Provider plugin not loaded',
        `No ${key.provider} plugin.`,
      );
    }
    const errors: FieldError[] = [];
    const expiresAt = dto.expiresAt === undefined ? undefined : dto.expiresAt === null ? null : new Date(dto.expiresAt);
    if (expiresAt && expiresAt.getTime() <= Date.now()) {
      errors.push({ field: 'expiresAt', messages: ['expiresAt must be in the future'] });
    }

    let secret: string;
    let externalId: string | null;
    let source: 'admin' | 'provisioned';
    const managementKey = await this.keys.openManagementKey(key);
    if (dto.key !== undefined) {
      const secretError = await this.keys.checkNewSecret(plugin, dto.key, ability);
      if (secretError) errors.push(secretError);
      const idError = externalIdError(plugin, dto.externalId?.trim());
      if (idError) errors.push(idError);
      if (errors.length > 0) throw new ValidationProblem(errors);
      secret = dto.key;
      externalId = dto.externalId?.trim() || null;
      source = 'admin';
    } else {
      if (errors.length > 0) throw new ValidationProblem(errors);
      if (!plugin.provisionKey || !managementKey) throw this.needsKey(plugin, Boolean(plugin.provisionKey));
      const minted = await this.provision(plugin, managementKey, key);
      secret = minted.secret;
      externalId = minted.externalId;
      source = 'provisioned';
    }

    const graceSeconds = dto.gracePeriodSeconds ?? (trigger === 'schedule' ? this.config.rotationGraceSeconds : 0);
    const now = new Date();
    const graceUntil = new Date(now.getTime() + graceSeconds * 1000);
    const canRetire = Boolean(plugin.retireKey && managementKey && key.externalId);

    let rotation: KeyRotation;
    try {
      rotation = await this.dataSource.transaction(async (manager) => {
        const [locked] = await manager.query<
          { secret_version: number; revoked_at: Date | null; fingerprint: string }[]
        >(`SELECT secret_version, revoked_at, fingerprint FROM api_keys WHERE id = $1 FOR UPDATE`, [key.id]);
        // Revoked or deleted while the provider minted the new key: nothing to rotate any more.
        if (!locked) throw notFound('API key', key.id);
        this.keys.refuseIfRevoked({ ...key, revokedAt: locked.revoked_at }, 'rotated');
        if (locked.secret_version !== key.secretVersion) {
          throw conflict('rotation-conflict', 'Rotated meanwhile', 'Another rotation of this key finished first.');
        }
        const version = key.secretVersion + 1;
        const sealed = this.keys.sealSecret(key, secret, version);
        await manager.update(
          ApiKey,
          { id: key.id },
          {
            ...sealed,
            secretVersion: version,
            externalId,
            lastRotatedAt: now,
            nextRotationAt: key.rotationSchedule ? nextRotation(key.rotationSchedule, now) : null,
            lastVerification: null,
            lastVerifiedAt: null,
            ...(expiresAt !== undefined ? { expiresAt } : {}),
          },
        );
        return manager.save(
          manager.create(KeyRotation, {
            keyId: key.id,
            trigger,
            source,
            status: canRetire ? 'retiring' : 'completed',
            fromVersion: key.secretVersion,
            toVersion: version,
            oldHint: key.secretHint,
            newHint: sealed.secretHint,
            oldFingerprint: locked.fingerprint,
            oldExternalId: key.externalId,
            graceUntil,
            retiredAt: null,
            retireAttempts: 0,
            error: null,
            actor,
          }),
        );
      });
    } catch (error) {
      // A key minted for a rotation that did not happen must not linger at the provider.
      if (source === 'provisioned' && externalId && plugin.retireKey && managementKey) {
        await plugin.retireKey(managementKey, externalId, this.scope(key)).catch(() => undefined);
      }
      throw error;
    }
    this.keys.emit(KEY_EVENTS.changed, key);

    if (canRetire && graceSeconds === 0) rotation = await this.retire(rotation, key, plugin, managementKey!);
    return { oldKey: rotation.oldHint, newKey: rotation.newHint!, expiresAt: graceUntil, rotation };
  }

  /** Retires old secrets whose grace period is over; retries failures with growing pauses. */
  async retireDue(now: Date = new Date()): Promise<number> {
    const due = await this.history
      .createQueryBuilder('r')
      .where(`r.status = 'retiring'`)
      .andWhere('r.grace_until <= :now', { now })
      .orderBy('r.grace_until', 'ASC')
      .limit(50)
      .getMany();
    for (const rotation of due) {
      const key = await this.keys.get(rotation.keyId).catch(() => null);
      const plugin = key && this.registry.get(key.provider);
      const managementKey = key && (await this.keys.openManagementKey(key));
      if (!key || !plugin?.retireKey || !managementKey) {
        await this.history.update(
          { id: rotation.id },
          { status: 'retire_failed', error: 'The management key or the plugin is gone; retire the old key yourself.' },
        );
        continue;
      }
      await this.retire(rotation, key, plugin, managementKey);
    }
    return due.length;
  }

  /**
   * Scheduled rotations that came due. A provider that can mint keys is rotated; for one that
   * cannot, the history says an admin has to bring the new key, once per due date.
   */
  async rotateDue(now: Date = new Date()): Promise<number> {
    const due = await this.dataSource
      .getRepository(ApiKey)
      .createQueryBuilder('k')
      .where('k.active AND k.next_rotation_at <= :now', { now })
      .orderBy('k.next_rotation_at', 'ASC')
      .limit(50)
      .getMany();
    for (const key of due) {
      const plugin = this.registry.get(key.provider);
      const next = key.rotationSchedule ? nextRotation(key.rotationSchedule, now) : null;
      if (plugin?.provisionKey && key.managementHint) {
        try {
          await this.rotate(key.id, {}, null, 'system', 'schedule');
          this.logger.log(`Scheduled rotation of key ${key.id} (${key.secretHint}) done`);
          continue;
        } catch (error) {
          await this.record(key, 'failed', reasonOf(error));
          this.logger.warn(`Scheduled rotation of key ${key.id} failed: ${reasonOf(error)}`);
        }
      } else {
        await this.record(
          key,
          'needs_admin',
          plugin?.provisionKey
            ? 'Rotation is due: store a management key so Keyward can mint the new key, or rotate with a new key.'
            : `Rotation is due: ${plugin?.config.name ?? key.provider} cannot mint keys; rotate with a new key.`,
        );
      }
      await this.dataSource.getRepository(ApiKey).update({ id: key.id }, { nextRotationAt: next });
    }
    return due.length;
  }

  private async retire(
    rotation: KeyRotation,
    key: ApiKey,
    plugin: ProviderPlugin,
    managementKey: string,
  ): Promise<KeyRotation> {
    try {
      await plugin.retireKey!(managementKey, rotation.oldExternalId!, this.scope(key));
      await this.history.update({ id: rotation.id }, { status: 'retired', retiredAt: new Date(), error: null });
    } catch (error) {
      const attempts = rotation.retireAttempts + 1;
      const giveUp = attempts >= MAX_RETIRE_ATTEMPTS;
      await this.history.update(
        { id: rotation.id },
        {
          status: giveUp ? 'retire_failed' : 'retiring',
          retireAttempts: attempts,
          error: reasonOf(error),
          // Next try after 1, 2, 4, 8 minutes.
          graceUntil: new Date(Date.now() + 60_000 * 2 ** (attempts - 1)),
        },
      );
      this.logger.warn(`Retiring the old secret of key ${key.id} failed (attempt ${attempts}): ${reasonOf(error)}`);
    }
    return this.history.findOneByOrFail({ id: rotation.id });
  }

  private async provision(plugin: ProviderPlugin, managementKey: string, key: ApiKey) {
    try {
      const minted = await plugin.provisionKey!(managementKey, {
        name: `${key.name} (Keyward v${key.secretVersion + 1})`.slice(0, 100),
        ...this.scope(key),
      });
      const format = plugin.checkKeyFormat(minted.secret);
      if (!format.ok) throw new Error(`the provider minted a key that is not ${format.expected}`);
      return minted;
    } catch (error) {
      throw new ProblemException(
        502,
        'provisioning-failed',
        'The provider did not mint a new key',
        `${plugin.config.name}: ${reasonOf(error)}`,
      );
    }
  }

  private scope(key: ApiKey) {
    return { organizationId: key.organizationId ?? undefined, projectId: key.projectId ?? undefined };
  }

  private needsKey(plugin: ProviderPlugin, canMint: boolean): ProblemException {
    return new ProblemException(
      422,
      'rotation-needs-key',
      'The new key must come from an admin',
      canMint
        ? `${plugin.config.name} can mint keys, but this key has no management key stored: send the new key in "key", or store a managementKey first.`
        : `${plugin.config.name} cannot mint keys: create the new key at ${plugin.config.name} and send it in "key".`,
    );
  }

  private async record(key: ApiKey, status: 'failed' | 'needs_admin', error: string): Promise<void> {
    await this.history.insert({
      keyId: key.id,
      trigger: 'schedule',
      source: 'none',
      status,
      fromVersion: key.secretVersion,
      toVersion: null,
      oldHint: key.secretHint,
      newHint: null,
      oldFingerprint: null,
      oldExternalId: null,
      graceUntil: null,
      retiredAt: null,
      retireAttempts: 0,
      error,
      actor: 'system',
    });
  }
}
