import { asSubject, defineAbilityFor, UnknownRoleError } from './abilities';

describe('abilities', () => {
  it('lets owners do everything, including managing owners', () => {
    const sut = defineAbilityFor('owner');
    expect(sut.can('create', asSubject('User', { role: 'owner' }))).toBe(true);
    expect(sut.can('revoke', 'ApiKey')).toBe(true);
  });

  it('lets admins manage everything except owners', () => {
    const sut = defineAbilityFor('admin');
    expect(sut.can('read', 'User')).toBe(true);
    expect(sut.can('create', asSubject('User', { role: 'operator' }))).toBe(true);
    expect(sut.can('update', asSubject('User', { role: 'owner' }))).toBe(false);
    expect(sut.can('create', asSubject('User', { role: 'owner' }))).toBe(false);
  });

  it('gives operators key work but no revoking and no users', () => {
    const sut = defineAbilityFor('operator');
    expect(sut.can('create', 'ApiKey')).toBe(true);
    expect(sut.can('rotate', 'ApiKey')).toBe(true);
    expect(sut.can('revoke', 'ApiKey')).toBe(false);
    expect(sut.can('read', 'User')).toBe(false);
    expect(sut.can('read', 'AuditLog')).toBe(false);
  });

  it('makes auditors read-only, audit log included, user list excluded', () => {
    const sut = defineAbilityFor('auditor');
    expect(sut.can('read', 'AuditLog')).toBe(true);
    expect(sut.can('read', 'ApiKey')).toBe(true);
    expect(sut.can('create', 'ApiKey')).toBe(false);
    expect(sut.can('read', 'User')).toBe(false);
  });

  it('treats an unknown role as an error, not as "no permissions"', () => {
    expect(() => defineAbilityFor('superuser')).toThrow(UnknownRoleError);
  });
});
