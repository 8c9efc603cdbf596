/**
 * What the console calls each input: messages name fields (`expiresAt must be …`) for the API,
 * where the field is what a program sends; a person reads the label beside the input instead.
 * One map for every form, so a field reads the same everywhere.
 */
export const FIELD_LABELS: Record<string, string> = {
  name: 'Name',
  email: 'Email',
  password: 'Password',
  role: 'Role',
  provider: 'Provider',
  key: 'Key',
  organizationId: 'Organization ID',
  projectId: 'Project ID',
  externalId: 'External ID',
  managementKey: 'Management key',
  expiresAt: 'Expires',
  rotationSchedule: 'Rotation schedule',
  priority: 'Priority',
  weight: 'Weight',
  value: 'Limit',
  unit: 'Unit',
  period: 'Period',
  limitValue: 'Limit',
  limitUnit: 'Unit',
  limitPeriod: 'Period',
  resetUsage: 'Reset usage',
  gracePeriodSeconds: 'Grace period (seconds)',
  providers: 'Providers',
  models: 'Models',
  rateLimitPerMinute: 'Requests per minute',
  allowedIps: 'Allowed addresses',
  input: 'Input price',
  output: 'Output price',
  cachedInput: 'Cached input price',
  model: 'Model',
  from: 'From',
  to: 'To',
  range: 'Range',
};

const escape = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/** The field's label: for `limit.value` that of `value`, for an unknown field the field itself. */
export function fieldLabel(field: string): string {
  const last = field
    .split('.')
    .pop()!
    .replace(/\[\d+\]$/, '');
  return FIELD_LABELS[field] ?? FIELD_LABELS[last] ?? field;
}

/** A message that starts by naming its field (`expiresAt must …`, `each models entry …`), with the label instead. */
export function labelMessage(field: string, message: string): string {
  const label = fieldLabel(field);
  const last = field
    .split('.')
    .pop()!
    .replace(/\[\d+\]$/, '');
  // A form field that flattens a nested one (`limitValue` for `limit.value`) keeps its message.
  const tail = /^[a-z]+([A-Z]\w*)$/.exec(last)?.[1];
  const names = [field, last, ...(tail ? [tail.charAt(0).toLowerCase() + tail.slice(1)] : [])];
  for (const name of new Set(names)) {
    const pattern = new RegExp(`^(each )?${escape(name)}\\b`);
    if (pattern.test(message))
      return message.replace(pattern, (_m, each: string | undefined) => (each ? `each ${label}` : label));
  }
  return message;
}
