import { Column, CreateDateColumn, Entity, PrimaryGeneratedColumn } from 'typeorm';

export type RotationTrigger = 'manual' | 'schedule';
/** `admin`: an admin supplied the new secret; `provisioned`: the provider plugin minted it. */
export type RotationSource = 'admin' | 'provisioned' | 'none';
/**
 * `retiring`: the old secret stays valid at the provider until `graceUntil`, then is retired.
 * `needs_admin`: a scheduled rotation came due for a provider that cannot mint keys.
 */
export type RotationStatus = 'completed' | 'retiring' | 'retired' | 'retire_failed' | 'failed' | 'needs_admin';

@Entity({ name: 'key_rotations' })
export class KeyRotation {
  @PrimaryGeneratedColumn('uuid')
  id!: string;

  @Column({ name: 'key_id', type: 'uuid' })
  keyId!: string;

  @Column({ type: 'text' })
  trigger!: RotationTrigger;

  @Column({ type: 'text' })
  source!: RotationSource;

  @Column({ type: 'text' })
  status!: RotationStatus;

  @Column({ name: 'from_version', type: 'integer' })
  fromVersion!: number;

  @Column({ name: 'to_version', type: 'integer', nullable: true })
  toVersion!: number | null;

  @Column({ name: 'old_hint', type: 'text' })
  oldHint!: string;

  @Column({ name: 'new_hint', type: 'text', nullable: true })
  newHint!: string | null;

  @Column({ name: 'old_fingerprint', type: 'text', nullable: true, select: false })
  oldFingerprint!: string | null;

  @Column({ name: 'old_external_id', type: 'text', nullable: true })
  oldExternalId!: string | null;

  @Column({ name: 'grace_until', type: 'timestamptz', nullable: true })
  graceUntil!: Date | null;

  @Column({ name: 'retired_at', type: 'timestamptz', nullable: true })
  retiredAt!: Date | null;

  @Column({ name: 'retire_attempts', type: 'integer' })
  retireAttempts!: number;

  @Column({ type: 'text', nullable: true })
  error!: string | null;

  @Column({ type: 'text', nullable: true })
  actor!: string | null;

  @CreateDateColumn({ name: 'created_at', type: 'timestamptz' })
  createdAt!: Date;
}
