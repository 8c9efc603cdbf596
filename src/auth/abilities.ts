import {
  AbilityBuilder,
  createMongoAbility,
  ForbiddenError,
  type ForcedSubject,
  type MongoAbility,
  subject as tag,
} from '@casl/ability';
import { isRole, type Role } from './roles';

export type Action = 'manage' | 'read' | 'create' | 'update' | 'delete' | 'disable' | 'revoke' | 'rotate' | 'verify';

/** Everything a permission can be about. Later features add their subject here. */
export type SubjectName =
  'Dashboard' | 'User' | 'AuditLog' | 'ApiKey' | 'Provider' | 'Pricing' | 'Usage' | 'Alert' | 'AccessToken' | 'all';

/** A user as a permission check sees it: conditions such as `{ role: 'owner' }` match on it. */
export interface UserSubject extends ForcedSubject<'User'> {
  role: Role;
}

export type AppAbility = MongoAbility<[Action, SubjectName | UserSubject]>;

export class UnknownRoleError extends Error {
  constructor(role: unknown) {
    super(`Unknown role ${JSON.stringify(role)}: expected owner, admin, operator or auditor`);
    this.name = 'UnknownRoleError';
  }
}

/**
 * The single definition of who may do what. Everything not granted here is denied; an unknown
 * role is an error rather than "no permissions", so a typo in a role can never go unnoticed.
 */
export function defineAbilityFor(role: Role | string): AppAbility {
  if (!isRole(role)) throw new UnknownRoleError(role);
  const { can, cannot, build } = new AbilityBuilder<AppAbility>(createMongoAbility);

  switch (role) {
    case 'owner':
      can('manage', 'all');
      break;
    case 'admin':
      can('manage', 'all');
      // Owners are managed by owners only: an admin can neither touch one nor make one.
      cannot(['create', 'update', 'disable', 'delete'], 'User', { role: 'owner' }).because(
        'Only an owner can create, change or disable an owner.',
      );
      break;
    case 'operator':
      can('read', ['Dashboard', 'ApiKey', 'Provider', 'Pricing', 'Usage', 'Alert', 'AccessToken']);
      can(['create', 'verify', 'rotate', 'update'], 'ApiKey');
      can('create', 'AccessToken');
      cannot(['revoke', 'delete'], ['ApiKey', 'AccessToken']).because(
        'Operators cannot revoke or delete; ask an admin.',
      );
      break;
    case 'auditor':
      // Read-only over what Keyward manages, including the audit log; the user list is
      // account administration and stays with owners and admins.
      can('read', 'all');
      cannot('read', 'User').because('Only owners and admins can see the user list.');
      break;
  }
  return build();
}

/** Tags a user-like object for condition checks such as `{ role: 'owner' }`. */
export function asSubject(type: 'User', object: { role: Role }): UserSubject {
  return tag(type, { ...object });
}

export { ForbiddenError };
