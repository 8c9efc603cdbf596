export const ROLES = ['owner', 'admin', 'operator', 'auditor'] as const;
export type Role = (typeof ROLES)[number];

export function isRole(value: unknown): value is Role {
  return typeof value === 'string' && (ROLES as readonly string[]).includes(value);
}

export const ROLE_DESCRIPTIONS: Record<Role, string> = {
  owner: 'Everything, including managing owners',
  admin: 'Everything except changing owners',
  operator: 'Day-to-day key work: add, verify, rotate, set limits; no revoking, no users',
  auditor: 'Read-only, including the audit log',
};
