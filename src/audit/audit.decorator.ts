import { SetMetadata } from '@nestjs/common';

export const AUDIT_META = Symbol('AUDIT_META');

export interface AuditMeta {
  action: string;
  targetType?: string;
  /** Route parameter holding the target id; defaults to `id`, else the response's `id`. */
  idParam?: string;
}

/**
 * Names the audit action of a state-changing route. Routes without it are still audited, under
 * a name derived from the controller and handler, so nothing changes unrecorded.
 */
export const Audit = (action: string, targetType?: string, idParam = 'id') =>
  SetMetadata(AUDIT_META, { action, targetType, idParam } satisfies AuditMeta);

/** For routes that write their own, richer audit entries (sign-in, sign-out, setup). */
export const SkipAudit = () => SetMetadata(AUDIT_META, false);
