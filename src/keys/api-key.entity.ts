import { Column, CreateDateColumn, Entity, PrimaryColumn, UpdateDateColumn } from 'typeorm';
import type { VerifyAPIKeyResponse } from '../plugin-system/provider-plugin';

const numeric = {
  to: (v: number | null | undefined) => v,
  from: (v: string | null) => (v === null ? null : Number(v)),
};

export const USAGE_UNITS = ['tokens', 'requests', 'usd'] as const;
export type UsageUnit = (typeof USAGE_UNITS)[number];
export const USAGE_PERIODS = ['daily', 'weekly', 'monthly', 'never'] as const;
export type UsagePeriod = (typeof USAGE_PERIODS)[number];

/** The last answer of the provider to a verify call, as stored on the key. */
export interface StoredVerification extends VerifyAPIKeyResponse {
  checkedAt: string;
}

/**
 * The spec's APIKey. The secret exists here only as an envelope; `secretHint` is the masked
 * form every response shows. Columns that hold envelopes are never selected by default.
 */
@Entity({ name: 'api_keys' })
export class ApiKey {
  // Assigned by the service before the insert: the envelope's AAD names the id.
  @PrimaryColumn({ type: 'uuid' })
  id!: string;

  @Column({ type: 'text' })
  provider!: string;

  @Column({ type: 'text' })
  name!: string;

  @Column({ name: 'secret_ciphertext', type: 'bytea', nullable: true, select: false })
  secretCiphertext!: Buffer | null;

  @Column({ name: 'secret_hint', type: 'text' })
  secretHint!: string;

  @Column({ name: 'secret_version', type: 'integer' })
  secretVersion!: number;

  @Column({ type: 'text', select: false })
  fingerprint!: string;

  @Column({ name: 'external_id', type: 'text', nullable: true })
  externalId!: string | null;

  @Column({ name: 'management_ciphertext', type: 'bytea', nullable: true, select: false })
  managementCiphertext!: Buffer | null;

  @Column({ name: 'management_hint', type: 'text', nullable: true })
  managementHint!: string | null;

  @Column({ name: 'organization_id', type: 'text', nullable: true })
  organizationId!: string | null;

  @Column({ name: 'project_id', type: 'text', nullable: true })
  projectId!: string | null;

  @Column({ type: 'boolean' })
  active!: boolean;

  @Column({ name: 'revoked_at', type: 'timestamptz', nullable: true })
  revokedAt!: Date | null;

  @Column({ name: 'revoked_by', type: 'text', nullable: true })
  revokedBy!: string | null;

  @Column({ name: 'expires_at', type: 'timestamptz', nullable: true })
  expiresAt!: Date | null;

  @Column({ name: 'last_used_at', type: 'timestamptz', nullable: true })
  lastUsedAt!: Date | null;

  @Column({ name: 'rotation_schedule', type: 'text', nullable: true })
  rotationSchedule!: string | null;

  @Column({ name: 'next_rotation_at', type: 'timestamptz', nullable: true })
  nextRotationAt!: Date | null;

  @Column({ name: 'last_rotated_at', type: 'timestamptz', nullable: true })
  lastRotatedAt!: Date | null;

  @Column({ type: 'integer' })
  priority!: number;

  @Column({ type: 'integer' })
  weight!: number;

  @Column({ name: 'usage_limit', type: 'numeric', precision: 20, scale: 6, nullable: true, transformer: numeric })
  usageLimit!: number | null;

  @Column({ name: 'usage_unit', type: 'text', nullable: true })
  usageUnit!: UsageUnit | null;

  @Column({ name: 'usage_period', type: 'text', nullable: true })
  usagePeriod!: UsagePeriod | null;

  @Column({ name: 'usage_current', type: 'numeric', precision: 20, scale: 6, transformer: numeric })
  usageCurrent!: number;

  @Column({ name: 'reset_at', type: 'timestamptz', nullable: true })
  resetAt!: Date | null;

  @Column({ name: 'last_verified_at', type: 'timestamptz', nullable: true })
  lastVerifiedAt!: Date | null;

  @Column({ name: 'last_verification', type: 'jsonb', nullable: true })
  lastVerification!: StoredVerification | null;

  /** `unhealthy`: the provider refused the key as invalid; the gateway skips it until it verifies. */
  @Column({ type: 'text' })
  health!: 'healthy' | 'unhealthy';

  @Column({ name: 'health_reason', type: 'text', nullable: true })
  healthReason!: string | null;

  @Column({ name: 'health_changed_at', type: 'timestamptz', nullable: true })
  healthChangedAt!: Date | null;

  /** Rate limited or out of credit: the gateway rests the key until then. */
  @Column({ name: 'cooldown_until', type: 'timestamptz', nullable: true })
  cooldownUntil!: Date | null;

  @Column({ name: 'created_by', type: 'text', nullable: true })
  createdBy!: string | null;

  @CreateDateColumn({ name: 'created_at', type: 'timestamptz' })
  createdAt!: Date;

  @UpdateDateColumn({ name: 'updated_at', type: 'timestamptz' })
  updatedAt!: Date;
}
