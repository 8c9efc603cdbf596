import { Inject, Injectable, Logger } from '@nestjs/common';
import { InjectDataSource } from '@nestjs/typeorm';
import { createHash, randomBytes } from 'node:crypto';
import { DataSource, IsNull } from 'typeorm';
import { AuditService } from '../audit/audit.service';
import { SYSTEM_ACTOR, type AuditContext } from '../audit/audit.types';
import { ProblemException } from '../common/problem';
import type { KeywardConfig } from '../config/config';
import { KEYWARD_CONFIG } from '../config/config.constants';
import { User } from './users/user.entity';
import { hashPassword } from './password';
import { SetupToken } from './setup-token.entity';

const SETUP_TTL_MS = 24 * 3600_000;
const SETUP_LOCK = 0x6b7773657475; // "kwsetu"
const sha256 = (value: string) => createHash('sha256').update(value).digest('hex');

export type FirstOwnerOutcome =
  | { kind: 'ready' }
  | { kind: 'created-from-environment'; email: string }
  | { kind: 'setup-link'; url: string; expiresAt: Date };

/**
 * The first owner. From KEYWARD_ADMIN_EMAIL/PASSWORD when no user exists; otherwise a random,
 * single-use setup link (only its SHA-256 is stored) that lets whoever started Keyward create
 * the owner in the console.
 */
@Injectable()
export class SetupService {
  private readonly logger = new Logger(SetupService.name);

  constructor(
    @InjectDataSource() private readonly dataSource: DataSource,
    private readonly audit: AuditService,
    @Inject(KEYWARD_CONFIG) private readonly config: KeywardConfig,
  ) {}

  async prepareFirstOwner(): Promise<FirstOwnerOutcome> {
    const users = this.dataSource.getRepository(User);
    if ((await users.count()) > 0) {
      if (this.config.admin && !(await users.existsBy({ email: this.config.admin.email }))) {
        this.logger.warn('KEYWARD_ADMIN_EMAIL is ignored: users already exist (it only creates the first owner).');
      }
      return { kind: 'ready' };
    }

    if (this.config.admin) {
      const { email, password } = this.config.admin;
      const created = await this.createOwner(
        email,
        password,
        { actor: SYSTEM_ACTOR, ip: null, userAgent: null },
        'environment',
      );
      if (created) return { kind: 'created-from-environment', email };
      return { kind: 'ready' };
    }

    const token = randomBytes(32).toString('base64url');
    const expiresAt = new Date(Date.now() + SETUP_TTL_MS);
    await this.dataSource.transaction(async (manager) => {
      // Only the newest link works: one printed at the last start, not any from earlier logs.
      await manager.update(SetupToken, { usedAt: IsNull() }, { expiresAt: new Date() });
      await manager.insert(SetupToken, { tokenHash: sha256(token), expiresAt, usedAt: null });
    });
    return { kind: 'setup-link', url: `${this.config.publicUrl}/setup?token=${token}`, expiresAt };
  }

  /** Whether a setup link can still be used (valid, unused, unexpired, and no user yet). */
  async isUsable(token: string | undefined): Promise<boolean> {
    if (!token || token.length > 200) return false;
    if ((await this.dataSource.getRepository(User).count()) > 0) return false;
    const row = await this.dataSource.getRepository(SetupToken).findOneBy({ tokenHash: sha256(token) });
    return !!row && row.usedAt === null && row.expiresAt.getTime() > Date.now();
  }

  async hasUsers(): Promise<boolean> {
    return (await this.dataSource.getRepository(User).count()) > 0;
  }

  /** Consumes the link and creates the owner, atomically; a second use fails. */
  async complete(token: string, email: string, password: string, context: AuditContext): Promise<User> {
    const owner = await this.dataSource.transaction(async (manager) => {
      await manager.query('SELECT pg_advisory_xact_lock($1)', [SETUP_LOCK]);
      if ((await manager.count(User)) > 0) {
        throw new ProblemException(409, 'setup-complete', 'Setup is already complete', 'Sign in instead.');
      }
      const consumed = await manager
        .createQueryBuilder()
        .update(SetupToken)
        .set({ usedAt: () => 'now()' })
        .where('token_hash = :hash AND used_at IS NULL AND expires_at > now()', { hash: sha256(token) })
        .execute();
      if (consumed.affected !== 1) {
        throw new ProblemException(
          403,
          'setup-link-invalid',
          'This setup link is invalid or used',
          'Restart Keyward to print a new setup link.',
        );
      }
      const user = manager.create(User, {
        email: email.trim().toLowerCase(),
        role: 'owner',
        passwordHash: await hashPassword(password),
        disabledAt: null,
      });
      await manager.insert(User, user);
      return user;
    });
    await this.audit.record(
      { ...context, actor: { id: owner.id, email: owner.email, role: 'owner' } },
      {
        action: 'user.create',
        outcome: 'success',
        target: { type: 'User', id: owner.id },
        details: { email: owner.email, role: 'owner', source: 'setup-link' },
      },
    );
    return owner;
  }

  private async createOwner(
    email: string,
    password: string,
    context: AuditContext,
    source: string,
  ): Promise<User | null> {
    const passwordHash = await hashPassword(password);
    const owner = await this.dataSource.transaction(async (manager) => {
      await manager.query('SELECT pg_advisory_xact_lock($1)', [SETUP_LOCK]);
      if ((await manager.count(User)) > 0) return null;
      const user = manager.create(User, { email, role: 'owner', passwordHash, disabledAt: null });
      await manager.insert(User, user);
      return user;
    });
    if (owner) {
      await this.audit.record(context, {
        action: 'user.create',
        outcome: 'success',
        target: { type: 'User', id: owner.id },
        details: { email, role: 'owner', source },
      });
    }
    return owner;
  }
}
