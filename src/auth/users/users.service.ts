import { Injectable } from '@nestjs/common';
import { InjectDataSource } from '@nestjs/typeorm';
import { DataSource, EntityManager } from 'typeorm';
import { AppAbility, asSubject, ForbiddenError } from '../abilities';
import { hashPassword, verifyPassword } from '../password';
import type { Role } from '../roles';
import { conflict, notFound, ProblemException, ValidationProblem } from '../../common/problem';
import type { CreateUserDto } from './dto/create-user.dto';
import type { ListUsersQuery } from './dto/list-users.query';
import type { UpdateUserDto } from './dto/update-user.dto';
import { User } from './user.entity';
import { OidcRefusal } from '../oidc/oidc.client';
import { emailSkeleton, normalizeEmail } from '../../common/validators';

function forbidden(error: unknown): never {
  if (error instanceof ForbiddenError) {
    throw new ProblemException(403, 'forbidden', 'Not allowed', error.message);
  }
  throw error;
}

@Injectable()
export class UsersService {
  constructor(@InjectDataSource() private readonly dataSource: DataSource) {}

  private get repo() {
    return this.dataSource.getRepository(User);
  }

  async count(): Promise<number> {
    return this.repo.count();
  }

  async list(query: ListUsersQuery): Promise<{ users: User[]; total: number }> {
    const qb = this.repo.createQueryBuilder('u').orderBy('u.created_at', 'ASC');
    if (query.q) qb.andWhere('u.email ILIKE :q', { q: `%${query.q.replace(/[\\%_]/g, '\\$&')}%` });
    if (query.role) qb.andWhere('u.role = :role', { role: query.role });
    const [users, total] = await qb
      .skip((query.page - 1) * query.pageSize)
      .take(query.pageSize)
      .getManyAndCount();
    return { users, total };
  }

  async get(id: string): Promise<User> {
    const user = await this.repo.findOneBy({ id });
    if (!user) throw notFound('User', id);
    return user;
  }

  /** For sign-in only: the one query that reads the password hash. */
  async findForSignIn(email: string): Promise<User | null> {
    return this.repo
      .createQueryBuilder('u')
      .addSelect('u.password_hash', 'u_password_hash')
      .where('u.email = :email', { email: normalizeEmail(email) })
      .getOne();
  }

  async findActive(id: string): Promise<User | null> {
    return this.repo.findOneBy({ id });
  }

  async create(dto: CreateUserDto, ability: AppAbility | null): Promise<User> {
    if (ability) {
      try {
        ForbiddenError.from(ability).throwUnlessCan('create', asSubject('User', { role: dto.role }));
      } catch (error) {
        forbidden(error);
      }
    }
    const email = normalizeEmail(dto.email);
    if (await this.repo.existsBy({ email })) {
      throw new ValidationProblem([{ field: 'email', messages: ['a user with this email already exists'] }]);
    }
    await this.refuseLookAlike(email);
    const user = this.repo.create({
      email,
      role: dto.role,
      passwordHash: await hashPassword(dto.password),
      disabledAt: null,
    });
    try {
      await this.repo.insert(user);
    } catch (error) {
      // A concurrent create with the same email lost the race on the unique index.
      if ((error as { code?: string }).code === '23505') {
        throw new ValidationProblem([{ field: 'email', messages: ['a user with this email already exists'] }]);
      }
      throw error;
    }
    return this.get(user.id);
  }

  /**
   * Changes a user's role and/or enabled state. Runs under a lock on the owners so that two
   * concurrent changes cannot both remove "the other" owner and leave none.
   */
  async update(id: string, dto: UpdateUserDto, ability: AppAbility, actorId: string): Promise<User> {
    if (dto.role === undefined && dto.disabled === undefined) {
      throw new ValidationProblem([{ field: 'role', messages: ['give role and/or disabled to change'] }]);
    }
    await this.dataSource.transaction(async (manager) => {
      const owners = await this.lockActiveOwners(manager);
      const user = await manager.findOneBy(User, { id });
      if (!user) throw notFound('User', id);
      try {
        ForbiddenError.from(ability).throwUnlessCan('update', asSubject('User', { role: user.role }));
        if (dto.role) ForbiddenError.from(ability).throwUnlessCan('update', asSubject('User', { role: dto.role }));
        if (dto.disabled)
          ForbiddenError.from(ability).throwUnlessCan('disable', asSubject('User', { role: user.role }));
      } catch (error) {
        forbidden(error);
      }
      if (dto.disabled && user.id === actorId) {
        throw conflict('cannot-disable-self', 'You cannot disable yourself', 'Ask another owner or admin to do it.');
      }

      const staysActiveOwner = (dto.role ?? user.role) === 'owner' && !(dto.disabled ?? user.disabledAt !== null);
      const isActiveOwner = user.role === 'owner' && user.disabledAt === null;
      if (isActiveOwner && !staysActiveOwner && owners.length <= 1) {
        throw conflict(
          'last-owner',
          'Keyward needs at least one owner',
          'This is the last active owner. Make another user owner first.',
        );
      }

      const roleChanged = dto.role !== undefined && dto.role !== user.role;
      if (dto.role) user.role = dto.role as Role;
      if (dto.disabled !== undefined && dto.disabled !== (user.disabledAt !== null)) {
        user.disabledAt = dto.disabled ? new Date() : null;
      }
      // A new role or a disabled account ends every session and JWT issued before.
      if (roleChanged || dto.disabled) user.tokenVersion += 1;
      await manager.save(user);
      if (roleChanged || dto.disabled) {
        await manager.query(`DELETE FROM sessions WHERE sess->>'userId' = $1`, [user.id]);
      }
    });
    return this.get(id);
  }

  /**
   * The user's own password change: the current password is required, and every other
   * session and every JWT ends (the token version moves). Returns the new token version, which
   * the caller's own session adopts.
   */
  async changePassword(id: string, current: string, next: string): Promise<number> {
    const user = await this.repo
      .createQueryBuilder('u')
      .addSelect('u.password_hash', 'u_password_hash')
      .where('u.id = :id', { id })
      .getOne();
    if (!user) throw notFound('User', id);
    if (!user.passwordHash) {
      throw conflict(
        'sso-only-account',
        'This account has no password',
        'It signs in through single sign-on; change the password at your identity provider.',
      );
    }
    if (!(await verifyPassword(user.passwordHash, current))) {
      throw new ValidationProblem([{ field: 'currentPassword', messages: ['the current password is wrong'] }]);
    }
    if (current === next) {
      throw new ValidationProblem([
        { field: 'newPassword', messages: ['choose a password different from the current one'] },
      ]);
    }
    return this.setPassword(id, next, false);
  }

  /**
   * An owner's reset: a temporary password the user must replace at their next sign-in.
   * Ends the user's sessions and JWTs.
   */
  async resetPassword(id: string, temporary: string, ability: AppAbility, actorId: string): Promise<User> {
    const user = await this.get(id);
    try {
      ForbiddenError.from(ability).throwUnlessCan('update', asSubject('User', { role: user.role }));
    } catch (error) {
      forbidden(error);
    }
    if (id === actorId) {
      throw conflict('reset-own-password', 'Use “Change password” for your own account', 'A reset is for other users.');
    }
    await this.setPassword(id, temporary, true);
    return this.get(id);
  }

  /** Ends every session and JWT of the user (the token version moves). */
  async signOutEverywhere(id: string): Promise<number> {
    return this.dataSource.transaction(async (manager) => {
      const [rows] = (await manager.query(
        `UPDATE users SET token_version = token_version + 1, updated_at = now() WHERE id = $1 RETURNING token_version`,
        [id],
      )) as [{ token_version: number }[], number];
      await manager.query(`DELETE FROM sessions WHERE sess->>'userId' = $1`, [id]);
      return rows[0]?.token_version ?? 0;
    });
  }

  private async setPassword(id: string, password: string, mustChange: boolean): Promise<number> {
    const passwordHash = await hashPassword(password);
    return this.dataSource.transaction(async (manager) => {
      const [rows] = (await manager.query(
        `UPDATE users SET password_hash = $2, must_change_password = $3, token_version = token_version + 1,
                updated_at = now()
          WHERE id = $1 RETURNING token_version`,
        [id, passwordHash, mustChange],
      )) as [{ token_version: number }[], number];
      await manager.query(`DELETE FROM sessions WHERE sess->>'userId' = $1`, [id]);
      return rows[0].token_version;
    });
  }

  /**
   * The account an OpenID Connect sign-in lands on: the one linked to the subject, else the
   * one with the email (linked now), else a new SSO-only account with the mapped role.
   * An SSO-only account's role follows the identity provider's claim on every sign-in.
   */
  async findOrCreateSso(
    ssoSubject: string,
    email: string,
    role: Role,
    emailVerified: boolean,
  ): Promise<{ user: User; created: boolean; roleChanged: boolean }> {
    return this.dataSource.transaction(async (manager) => {
      const linked = await manager.findOneBy(User, { ssoSubject });
      let user = linked ?? (await manager.findOneBy(User, { email: email.trim().toLowerCase() }));
      // Taking over an account that exists in Keyward needs the provider's word that the email
      // is verified: otherwise whoever can name an email at the provider would own the account.
      if (user && !linked && !emailVerified) {
        throw new OidcRefusal(
          'email not verified for an existing account',
          'An account with this email exists; your provider must confirm the email is verified before it can sign in to it.',
          user.email,
        );
      }
      if (!user) {
        const inserted = manager.create(User, {
          email: email.trim().toLowerCase(),
          role,
          passwordHash: null,
          disabledAt: null,
          ssoSubject,
        });
        try {
          await manager.insert(User, inserted);
        } catch (error) {
          // Two first sign-ins at once: the other one created the account.
          if ((error as { code?: string }).code === '23505') {
            throw new OidcRefusal('concurrent first sign-in', 'Your account was just created; sign in again.', email);
          }
          throw error;
        }
        user = await manager.findOneByOrFail(User, { id: inserted.id });
        return { user, created: true, roleChanged: false };
      }
      if (user.ssoSubject && user.ssoSubject !== ssoSubject) {
        throw conflict(
          'sso-subject-mismatch',
          'This email belongs to another single sign-on account',
          'Ask an owner to check the account.',
        );
      }
      // The claim manages the role of SSO-only accounts; an account that also has a password
      // was set up in Keyward and keeps the role given there. The last owner stays an owner.
      const [{ has_password: hasPassword }] = (await manager.query(
        `SELECT password_hash IS NOT NULL AS has_password FROM users WHERE id = $1`,
        [user.id],
      )) as { has_password: boolean }[];
      const roleChanged =
        !hasPassword && user.role !== role && !(user.role === 'owner' && (await this.isLastOwner(manager, user.id)));
      user.ssoSubject = ssoSubject;
      if (roleChanged) {
        user.role = role;
        user.tokenVersion += 1;
      }
      await manager.save(user);
      return { user, created: false, roleChanged };
    });
  }

  private async isLastOwner(manager: EntityManager, id: string): Promise<boolean> {
    const owners = await this.lockActiveOwners(manager);
    return owners.length <= 1 && owners[0]?.id === id;
  }

  async hasPassword(id: string): Promise<boolean> {
    const [row] = (await this.dataSource.query(`SELECT password_hash IS NOT NULL AS has FROM users WHERE id = $1`, [
      id,
    ])) as { has: boolean }[];
    return row?.has === true;
  }

  /** A new address that reads like an existing one (Cyrillic о for o, say) is refused. */
  private async refuseLookAlike(email: string): Promise<void> {
    const skeleton = emailSkeleton(email);
    const rows = await this.dataSource.query<{ email: string }[]>(`SELECT email FROM users`);
    if (rows.some((row) => emailSkeleton(row.email) === skeleton)) {
      throw new ValidationProblem([
        { field: 'email', messages: ['this email looks like an existing account’s; use a clearly different address'] },
      ]);
    }
  }

  async recordSignIn(id: string): Promise<void> {
    await this.repo.update({ id }, { lastSignInAt: new Date() });
  }

  private async lockActiveOwners(manager: EntityManager): Promise<{ id: string }[]> {
    return manager.query(`SELECT id FROM users WHERE role = 'owner' AND disabled_at IS NULL ORDER BY id FOR UPDATE`);
  }
}
