import { Injectable } from '@nestjs/common';
import { InjectDataSource } from '@nestjs/typeorm';
import { DataSource, EntityManager } from 'typeorm';
import { AppAbility, asSubject, ForbiddenError } from '../abilities';
import { hashPassword } from '../password';
import type { Role } from '../roles';
import { conflict, notFound, ProblemException, ValidationProblem } from '../../common/problem';
import type { CreateUserDto } from './dto/create-user.dto';
import type { ListUsersQuery } from './dto/list-users.query';
import type { UpdateUserDto } from './dto/update-user.dto';
import { User } from './user.entity';
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

      if (dto.role) user.role = dto.role as Role;
      if (dto.disabled !== undefined && dto.disabled !== (user.disabledAt !== null)) {
        user.disabledAt = dto.disabled ? new Date() : null;
      }
      await manager.save(user);
      if (dto.disabled) {
        // Signing out a disabled user everywhere at once; JWTs are refused on their next use.
        await manager.query(`DELETE FROM sessions WHERE sess->>'userId' = $1`, [user.id]);
      }
    });
    return this.get(id);
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
