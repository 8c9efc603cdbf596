import { Inject, Injectable } from '@nestjs/common';
import { InjectDataSource } from '@nestjs/typeorm';
import { DataSource } from 'typeorm';
import { type AppAbility, asSubject } from '../auth/abilities';
import type { Role } from '../auth/roles';
import { notFound, ProblemException } from '../common/problem';
import type { KeywardConfig } from '../config/config';
import { KEYWARD_CONFIG } from '../config/config.constants';
import type { CreateIpRuleDto } from './dto/create-ip-rule.dto';
import { IpAllowlistService, type IpAllowRule } from './ip-allowlist.service';
import { SignInLockoutService } from './sign-in-lockout.service';

type Caller = { id: string; role: string; ip: string | null };

/**
 * The rules behind the Security page and /api/admin/ip-rules and /api/admin/lockouts. Rules for
 * owners, like owners themselves, are managed by owners only.
 */
@Injectable()
export class SecurityService {
  constructor(
    @InjectDataSource() private readonly dataSource: DataSource,
    private readonly allowlist: IpAllowlistService,
    private readonly lockout: SignInLockoutService,
    @Inject(KEYWARD_CONFIG) private readonly config: KeywardConfig,
  ) {}

  rules(): Promise<IpAllowRule[]> {
    return this.allowlist.list();
  }

  async createRule(dto: CreateIpRuleDto, caller: Caller, ability: AppAbility): Promise<IpAllowRule> {
    await this.refuseUnlessMayManage(dto.role, dto.userId, ability);
    return this.allowlist.create(dto, caller);
  }

  async removeRule(id: string, caller: Caller, ability: AppAbility): Promise<IpAllowRule> {
    const rule = (await this.allowlist.list()).find((r) => r.id === id);
    if (!rule) throw notFound('IP rule', id);
    await this.refuseUnlessMayManage(rule.role ?? undefined, rule.userId ?? undefined, ability);
    return this.allowlist.remove(id, caller);
  }

  lockouts() {
    return this.lockout.locked();
  }

  async unlock(userId: string, ability: AppAbility) {
    const role = await this.roleOf(userId);
    if (!ability.can('update', asSubject('User', { role }))) {
      throw new ProblemException(403, 'forbidden', 'Not allowed', 'Only an owner can unlock an owner.');
    }
    return this.lockout.unlock(userId);
  }

  /** What the Security page shows about limits: the settings in force and where counts live. */
  limits() {
    return {
      signInPerMinutePerAddress: this.config.signInRateLimitPerMinute,
      lockoutThreshold: this.config.security.lockoutThreshold,
      lockoutMinutes: this.config.security.lockoutMinutes,
      sharedThroughRedis: Boolean(this.config.redisUrl),
      trustedProxies: this.config.trustProxy || null,
    };
  }

  async findUserByEmail(email: string): Promise<{ id: string; role: Role } | null> {
    const [row] = await this.dataSource.query<{ id: string; role: Role }[]>(
      `SELECT id, role FROM users WHERE email = $1`,
      [email.trim().toLowerCase()],
    );
    return row ?? null;
  }

  private async roleOf(userId: string): Promise<Role> {
    const [row] = await this.dataSource.query<{ role: Role }[]>(`SELECT role FROM users WHERE id = $1`, [userId]);
    if (!row) throw notFound('User', userId);
    return row.role;
  }

  private async refuseUnlessMayManage(role: Role | undefined, userId: string | undefined, ability: AppAbility) {
    const subjectRole = role ?? (userId ? await this.roleOf(userId).catch(() => undefined) : undefined);
    if (subjectRole && !ability.can('update', asSubject('User', { role: subjectRole }))) {
      throw new ProblemException(403, 'forbidden', 'Not allowed', 'Only an owner can set IP rules for owners.');
    }
  }
}
