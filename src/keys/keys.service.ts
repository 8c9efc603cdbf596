import { Inject, Injectable, Logger } from '@nestjs/common';
import { EventEmitter2 } from '@nestjs/event-emitter';
import { InjectDataSource } from '@nestjs/typeorm';
import { randomUUID } from 'node:crypto';
import { Brackets, DataSource, EntityManager } from 'typeorm';
import type { AppAbility } from '../auth/abilities';
import { conflict, type FieldError, notFound, ProblemException, ValidationProblem } from '../common/problem';
import { KEYWARD_CONFIG } from '../config/config.constants';
import type { KeywardConfig } from '../config/config';
import { SecretsService } from '../crypto/secrets.service';
import type { ProviderPlugin, VerifyAPIKeyResponse } from '../plugin-system/provider-plugin';
import { ProviderRegistry } from '../plugin-system/provider-registry';
import { checkRotationSchedule, nextRotation } from '../rotation/rotation-schedule';
import { ApiKey, type StoredVerification } from './api-key.entity';
import { toApiKeyView } from './api-key.view';
import type { CreateApiKeyDto } from './dto/create-api-key.dto';
import type { ListApiKeysQuery } from './dto/list-api-keys.query';
import type { SetLimitsDto } from './dto/set-limits.dto';
import type { UpdateApiKeyDto } from './dto/update-api-key.dto';
import { maskSecret } from './key-hint';
import { nextResetAt } from './usage-period';

/** Events other modules (audit, gateway caches, alerts) react to; never carry a secret. */
export const KEY_EVENTS = {
  changed: 'api-key.changed',
  revoked: 'api-key.revoked',
} as const;

/**
 * `externalId` (which key retireKey deletes at the provider) and the management key (with which
 * it does) steer calls to the provider's management API: only those who may manage keys fully —
 * owners and admins — set them. Operators get a 403 that says so.
 */
export function refuseProviderIdentityChange(
  dto: { externalId?: string | null; managementKey?: string | null },
  ability: AppAbility | null | undefined,
): void {
  if (!ability || ability.can('manage', 'ApiKey')) return;
  const fields = (['externalId', 'managementKey'] as const).filter((f) => dto[f] !== undefined);
  if (fields.length === 0) return;
  throw new ProblemException(
    403,
    'forbidden',
    'Not allowed',
    `Only owners and admins may set ${fields.join(' or ')}: they decide which key Keyward deletes at the provider.`,
  );
}

/** The plugin's verdict on an externalId, as a field error (null when fine or unchecked). */
export function externalIdError(plugin: ProviderPlugin | undefined, id: string | null | undefined): FieldError | null {
  if (!id) return null;
  const check =
    plugin?.checkExternalId?.(id) ??
    (isSafeSegment(id) ? { ok: true as const } : { ok: false as const, expected: 'letters, digits, "_", "-" or "."' });
  return check.ok ? null : { field: 'externalId', messages: [`externalId must be ${check.expected}`] };
}

/** A provider id that is safe in a URL path for any plugin: no "..", no separators. */
function isSafeSegment(id: string): boolean {
  return /^[A-Za-z0-9_.-]{1,200}$/.test(id) && !/^\.+$/.test(id);
}

export interface KeyEvent {
  keyId: string;
  provider: string;
}

const FINGERPRINT_PURPOSE = 'api-key-fingerprint';

/** The envelope's AAD: a ciphertext only opens for its own row, provider and secret version. */
export const secretAad = (key: Pick<ApiKey, 'id' | 'provider'>, version: number) =>
  `api_key:${key.id}:${key.provider}:v${version}`;
export const managementAad = (key: Pick<ApiKey, 'id' | 'provider'>) => `api_key:${key.id}:${key.provider}:management`;

const SORT_COLUMNS: Record<string, string> = {
  name: 'k.name',
  provider: 'k.provider',
  createdAt: 'k.created_at',
  expiresAt: 'k.expires_at',
  lastUsed: 'k.last_used_at',
  priority: 'k.priority',
};

const escapeLike = (s: string) => s.replace(/[\\%_]/g, '\\$&');

function parseFutureDate(value: string | null | undefined, field: string, errors: FieldError[]): Date | null {
  if (value === null || value === undefined) return null;
  const date = new Date(value);
  if (Number.isNaN(date.getTime())) {
    errors.push({ field, messages: [`${field} must be an ISO 8601 date-time such as 2027-01-31T00:00:00Z`] });
  } else if (date.getTime() <= Date.now()) {
    errors.push({ field, messages: [`${field} must be in the future`] });
  }
  return date;
}

/**
 * The vault: stores provider keys as envelopes, answers with masked hints, and is the only
 * place that decrypts a secret (`openSecret`), for the provider call that needs it.
 */
@Injectable()
export class KeysService {
  private readonly logger = new Logger(KeysService.name);

  constructor(
    @InjectDataSource() private readonly dataSource: DataSource,
    private readonly secrets: SecretsService,
    private readonly registry: ProviderRegistry,
    private readonly events: EventEmitter2,
    @Inject(KEYWARD_CONFIG) private readonly config: KeywardConfig,
  ) {}

  private get repo() {
    return this.dataSource.getRepository(ApiKey);
  }

  view(key: ApiKey) {
    const plugin = this.registry.get(key.provider);
    return toApiKeyView(key, {
      expiryWarningDays: this.config.expiryWarningDays,
      canProvision: Boolean(plugin?.provisionKey && key.managementHint),
    });
  }

  fingerprint(secret: string): string {
    return this.secrets.hmac(FINGERPRINT_PURPOSE, secret);
  }

  /**
   * Checks everything about a new secret that needs its provider: the format, and that no key,
   * live, revoked or rotated out, holds it already. The message names the holder only to those
   * allowed to see keys.
   */
  async checkNewSecret(
    plugin: ProviderPlugin,
    secret: string,
    ability: AppAbility | null,
    field = 'key',
    manager: EntityManager = this.dataSource.manager,
  ): Promise<FieldError | null> {
    const format = plugin.checkKeyFormat(secret);
    if (!format.ok) return { field, messages: [`expected ${format.expected}`] };
    const fingerprint = this.fingerprint(secret);
    const mayName = ability?.can('read', 'ApiKey') ?? false;
    const [holder] = await manager.query<{ id: string; name: string; revoked: boolean }[]>(
      `SELECT id, name, revoked_at IS NOT NULL AS revoked FROM api_keys WHERE fingerprint = $1`,
      [fingerprint],
    );
    if (holder) {
      const who = mayName ? ` as "${holder.name}" (${holder.id})` : '';
      return {
        field,
        messages: [
          holder.revoked
            ? `this key was revoked${who}; a revoked key cannot be stored again: create a new key at the provider`
            : `this key is already stored${who}`,
        ],
      };
    }
    const [rotated] = await manager.query<{ id: string; name: string }[]>(
      `SELECT k.id, k.name FROM key_rotations r JOIN api_keys k ON k.id = r.key_id WHERE r.old_fingerprint = $1 LIMIT 1`,
      [fingerprint],
    );
    if (rotated) {
      const who = mayName ? ` of "${rotated.name}" (${rotated.id})` : '';
      return { field, messages: [`this key was rotated out${who}; a rotated-out key cannot be stored again`] };
    }
    return null;
  }

  async create(dto: CreateApiKeyDto, ability: AppAbility | null, actor: string | null): Promise<ApiKey> {
    refuseProviderIdentityChange(dto, ability);
    const errors: FieldError[] = [];
    const plugin = this.registry.get(dto.provider);
    const idError = externalIdError(plugin, dto.externalId?.trim());
    if (idError) errors.push(idError);
    if (!plugin) {
      errors.push({
        field: 'provider',
        messages: [`unknown provider; known providers: ${this.registry.ids().join(', ')}`],
      });
    } else {
      const secretError = await this.checkNewSecret(plugin, dto.key, ability);
      if (secretError) errors.push(secretError);
      if (plugin.config.requiresOrg && !dto.organizationId?.trim()) {
        errors.push({ field: 'organizationId', messages: [`${plugin.config.name} keys need an organization id`] });
      }
      if (dto.managementKey !== undefined && !plugin.provisionKey && !plugin.retireKey) {
        errors.push({
          field: 'managementKey',
          messages: [`${plugin.config.name} can neither mint nor retire keys, so a management key has no use here`],
        });
      }
    }
    const expiresAt = parseFutureDate(dto.expiresAt, 'expiresAt', errors);
    const schedule = dto.rotationSchedule?.trim() || null;
    const scheduleError = schedule ? checkRotationSchedule(schedule) : null;
    if (scheduleError) errors.push({ field: 'rotationSchedule', messages: [`rotationSchedule ${scheduleError}`] });
    if (errors.length > 0 || !plugin) throw new ValidationProblem(errors);

    const id = randomUUID();
    const key = this.repo.create({
      id,
      provider: dto.provider,
      name: dto.name.trim(),
      secretCiphertext: this.secrets.seal(dto.key, secretAad({ id, provider: dto.provider }, 1)),
      secretHint: maskSecret(dto.key),
      secretVersion: 1,
      fingerprint: this.fingerprint(dto.key),
      externalId: dto.externalId?.trim() || null,
      managementCiphertext: dto.managementKey
        ? this.secrets.seal(dto.managementKey, managementAad({ id, provider: dto.provider }))
        : null,
      managementHint: dto.managementKey ? maskSecret(dto.managementKey) : null,
      organizationId: dto.organizationId?.trim() || null,
      projectId: dto.projectId?.trim() || null,
      active: true,
      revokedAt: null,
      revokedBy: null,
      expiresAt,
      lastUsedAt: null,
      rotationSchedule: schedule,
      nextRotationAt: schedule ? nextRotation(schedule) : null,
      lastRotatedAt: null,
      priority: dto.priority ?? 100,
      weight: dto.weight ?? 1,
      usageLimit: dto.limit?.value ?? null,
      usageUnit: dto.limit?.unit ?? null,
      usagePeriod: dto.limit?.period ?? null,
      usageCurrent: 0,
      resetAt: dto.limit ? nextResetAt(dto.limit.period) : null,
      lastVerifiedAt: null,
      lastVerification: null,
      health: 'healthy',
      healthReason: null,
      healthChangedAt: null,
      cooldownUntil: null,
      createdBy: actor,
    });
    try {
      await this.repo.insert(key);
    } catch (error) {
      // Two admins adding the same secret at once: the unique fingerprint lets one win.
      if ((error as { code?: string }).code === '23505') {
        throw new ValidationProblem([{ field: 'key', messages: ['this key is already stored'] }]);
      }
      throw error;
    }
    this.emit(KEY_EVENTS.changed, key);
    return this.get(id);
  }

  async list(query: ListApiKeysQuery): Promise<{ keys: ApiKey[]; total: number }> {
    const qb = this.repo.createQueryBuilder('k');
    if (query.provider) qb.andWhere('k.provider = :provider', { provider: query.provider });
    if (query.active !== undefined) qb.andWhere('k.active = :active', { active: query.active });
    if (query.q) qb.andWhere('k.name ILIKE :q', { q: `%${escapeLike(query.q)}%` });
    if (query.expiring) {
      qb.andWhere(
        new Brackets((w) =>
          w
            .where('k.expires_at > now()')
            .andWhere(`k.expires_at <= now() + make_interval(days => :days)`, { days: query.expiring }),
        ),
      );
    }
    const descending = query.sort.startsWith('-');
    const column = SORT_COLUMNS[query.sort.replace(/^-/, '')] ?? 'k.created_at';
    qb.orderBy(column, descending ? 'DESC' : 'ASC', 'NULLS LAST').addOrderBy('k.id', 'ASC');
    const [keys, total] = await qb
      .offset((query.page - 1) * query.pageSize)
      .limit(query.pageSize)
      .getManyAndCount();
    return { keys, total };
  }

  async get(id: string, manager: EntityManager = this.dataSource.manager): Promise<ApiKey> {
    const key = await manager.findOneBy(ApiKey, { id });
    if (!key) throw notFound('API key', id);
    return key;
  }

  /** Name and hint of a key for the audit log; null when it does not exist (any more). */
  async describe(id: string): Promise<Record<string, unknown> | null> {
    if (!/^[0-9a-f-]{36}$/i.test(id)) return null;
    const key = await this.repo.findOne({
      where: { id },
      select: { id: true, name: true, provider: true, secretHint: true },
    });
    return key ? { name: key.name, provider: key.provider, hint: key.secretHint } : null;
  }

  async update(id: string, dto: UpdateApiKeyDto, ability?: AppAbility | null): Promise<ApiKey> {
    refuseProviderIdentityChange(dto, ability);
    const key = await this.get(id);
    this.refuseIfRevoked(key, 'changed');
    const plugin = this.registry.get(key.provider);
    const errors: FieldError[] = [];
    const change: Partial<ApiKey> = {};
    if (dto.name !== undefined) change.name = dto.name.trim();
    if (dto.organizationId !== undefined) {
      change.organizationId = dto.organizationId?.trim() || null;
      if (plugin?.config.requiresOrg && !change.organizationId) {
        errors.push({ field: 'organizationId', messages: [`${plugin.config.name} keys need an organization id`] });
      }
    }
    if (dto.projectId !== undefined) change.projectId = dto.projectId?.trim() || null;
    if (dto.externalId !== undefined) {
      change.externalId = dto.externalId?.trim() || null;
      const idError = externalIdError(plugin, change.externalId);
      if (idError) errors.push(idError);
    }
    if (dto.expiresAt !== undefined) change.expiresAt = parseFutureDate(dto.expiresAt, 'expiresAt', errors);
    if (dto.rotationSchedule !== undefined) {
      const schedule = dto.rotationSchedule?.trim() || null;
      const scheduleError = schedule ? checkRotationSchedule(schedule) : null;
      if (scheduleError) errors.push({ field: 'rotationSchedule', messages: [`rotationSchedule ${scheduleError}`] });
      change.rotationSchedule = schedule;
      change.nextRotationAt = schedule && !scheduleError ? nextRotation(schedule) : null;
    }
    if (dto.managementKey !== undefined) {
      if (dto.managementKey !== null && !plugin?.provisionKey && !plugin?.retireKey) {
        errors.push({
          field: 'managementKey',
          messages: [
            `${plugin?.config.name ?? key.provider} can neither mint nor retire keys, so a management key has no use here`,
          ],
        });
      } else {
        change.managementCiphertext = dto.managementKey
          ? this.secrets.seal(dto.managementKey, managementAad(key))
          : null;
        change.managementHint = dto.managementKey ? maskSecret(dto.managementKey) : null;
      }
    }
    if (dto.priority !== undefined) change.priority = dto.priority;
    if (dto.weight !== undefined) change.weight = dto.weight;
    if (errors.length > 0) throw new ValidationProblem(errors);
    if (Object.keys(change).length === 0) {
      throw new ValidationProblem([{ field: 'name', messages: ['send at least one field to change'] }]);
    }
    await this.repo.update({ id }, change);
    this.emit(KEY_EVENTS.changed, key);
    return this.get(id);
  }

  async setLimits(id: string, dto: SetLimitsDto): Promise<ApiKey> {
    const key = await this.get(id);
    this.refuseIfRevoked(key, 'limited');
    if (dto.value === null) {
      await this.repo.update({ id }, { usageLimit: null, usageUnit: null, usagePeriod: null, resetAt: null });
    } else {
      const unit = dto.unit!;
      const period = dto.period!;
      // A new unit or period makes the old count meaningless; a new value alone keeps it.
      const restart = dto.resetUsage === true || unit !== key.usageUnit || period !== key.usagePeriod;
      await this.repo.update(
        { id },
        {
          usageLimit: dto.value,
          usageUnit: unit,
          usagePeriod: period,
          ...(restart ? { usageCurrent: 0, resetAt: nextResetAt(period) } : {}),
        },
      );
    }
    this.emit(KEY_EVENTS.changed, key);
    return this.get(id);
  }

  /**
   * Immediate and permanent: the row is marked revoked and the envelope is destroyed in the same
   * statement, so from the commit on no instance can decrypt the secret again. The fingerprint
   * stays, so the same secret cannot be added back by accident.
   */
  async revoke(id: string, actor: string | null): Promise<ApiKey> {
    await this.dataSource.transaction(async (manager) => {
      const [row] = await manager.query<{ revoked_at: Date | null }[]>(
        `SELECT revoked_at FROM api_keys WHERE id = $1 FOR UPDATE`,
        [id],
      );
      if (!row) throw notFound('API key', id);
      if (row.revoked_at) {
        throw conflict(
          'key-revoked',
          'Key already revoked',
          `This key was revoked at ${row.revoked_at.toISOString()}.`,
        );
      }
      await manager.query(
        `UPDATE api_keys SET active = false, revoked_at = now(), revoked_by = $2, secret_ciphertext = NULL,
           next_rotation_at = NULL, updated_at = now() WHERE id = $1`,
        [id, actor],
      );
      await manager.query(`SELECT pg_notify('keyward_keys', $1)`, [id]);
    });
    const key = await this.get(id);
    this.emit(KEY_EVENTS.revoked, key);
    return key;
  }

  /** Deletes a revoked key with its history; a live key must be revoked first. */
  async remove(id: string): Promise<void> {
    const key = await this.get(id);
    if (!key.revokedAt) {
      throw conflict(
        'key-not-revoked',
        'Revoke the key first',
        'Only a revoked key can be deleted, so that deleting never stops traffic by surprise.',
      );
    }
    await this.repo.delete({ id });
  }

  /** Calls the provider with the key and stores what it said (shown as ValidationStatus). */
  async verify(id: string): Promise<VerifyAPIKeyResponse & { checkedAt: string }> {
    const key = await this.get(id);
    this.refuseIfRevoked(key, 'verified');
    const plugin = this.registry.get(key.provider);
    if (!plugin) {
      throw new ProblemException(
        503,
        'provider-unavailable',
        'Provider plugin not loaded',
        `The ${key.provider} plugin is not loaded on this instance; see the Providers page.`,
      );
    }
    const secret = await this.openSecret(key.id);
    const result = await plugin.verify(secret, key.organizationId ?? undefined);
    const stored: StoredVerification = { ...result, checkedAt: new Date().toISOString() };
    await this.repo.update({ id }, { lastVerifiedAt: new Date(stored.checkedAt), lastVerification: stored });
    if (result.valid && !result.errorType) {
      // A key the gateway took out as dead is back in service once its provider accepts it.
      const healed = await this.dataSource.query(
        `UPDATE api_keys SET health = 'healthy', health_reason = NULL, health_changed_at = now(), cooldown_until = NULL
          WHERE id = $1 AND (health <> 'healthy' OR cooldown_until IS NOT NULL) RETURNING id`,
        [id],
      );
      if ((healed as unknown[][])[0]?.length) this.emit(KEY_EVENTS.changed, key);
    }
    return stored;
  }

  /**
   * The plaintext secret, for a call to its provider only. Read straight from the database so a
   * revoke committed anywhere is seen at once (the envelope is gone).
   */
  async openSecret(id: string, manager: EntityManager = this.dataSource.manager): Promise<string> {
    const [row] = await manager.query<{ provider: string; secret_ciphertext: Buffer | null; secret_version: number }[]>(
      `SELECT provider, secret_ciphertext, secret_version FROM api_keys WHERE id = $1`,
      [id],
    );
    if (!row) throw notFound('API key', id);
    if (!row.secret_ciphertext) {
      throw conflict('key-revoked', 'Key revoked', 'A revoked key is never decrypted or used again.');
    }
    return this.secrets
      .open(row.secret_ciphertext, secretAad({ id, provider: row.provider }, row.secret_version))
      .toString('utf8');
  }

  async openManagementKey(key: ApiKey, manager: EntityManager = this.dataSource.manager): Promise<string | null> {
    const [row] = await manager.query<{ management_ciphertext: Buffer | null }[]>(
      `SELECT management_ciphertext FROM api_keys WHERE id = $1`,
      [key.id],
    );
    if (!row?.management_ciphertext) return null;
    return this.secrets.open(row.management_ciphertext, managementAad(key)).toString('utf8');
  }

  /** Seals a new secret for `key` at `version` (rotation writes it in its own transaction). */
  sealSecret(key: Pick<ApiKey, 'id' | 'provider'>, secret: string, version: number) {
    return {
      secretCiphertext: this.secrets.seal(secret, secretAad(key, version)),
      secretHint: maskSecret(secret),
      fingerprint: this.fingerprint(secret),
    };
  }

  /** Starts the counters whose period ended over; returns how many keys were reset. */
  async resetDueCounters(now: Date = new Date()): Promise<number> {
    const due = await this.repo
      .createQueryBuilder('k')
      .where('k.reset_at <= :now', { now })
      .andWhere('k.usage_period IS NOT NULL')
      .getMany();
    for (const key of due) {
      await this.repo
        .createQueryBuilder()
        .update()
        .set({ usageCurrent: 0, resetAt: nextResetAt(key.usagePeriod!, now) })
        .where('id = :id AND reset_at = :resetAt', { id: key.id, resetAt: key.resetAt })
        .execute();
    }
    if (due.length > 0) this.logger.log(`Usage counters reset for ${due.length} key(s)`);
    return due.length;
  }

  refuseIfRevoked(key: ApiKey, what: string): void {
    if (key.revokedAt) {
      throw conflict(
        'key-revoked',
        'Key revoked',
        `This key was revoked at ${key.revokedAt.toISOString()} and cannot be ${what}; add a new key instead.`,
      );
    }
  }

  /** Tells this instance at once (listeners run synchronously) and the others through NOTIFY. */
  emit(event: string, key: Pick<ApiKey, 'id' | 'provider'>): void {
    this.events.emit(event, { keyId: key.id, provider: key.provider } satisfies KeyEvent);
    if (event !== KEY_EVENTS.revoked) {
      void this.dataSource.query(`SELECT pg_notify('keyward_keys', $1)`, [key.id]).catch(() => undefined);
    }
  }
}
