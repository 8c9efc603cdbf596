import { Column, CreateDateColumn, Entity, PrimaryColumn } from 'typeorm';

/**
 * A credential an application uses to call providers through the gateway. Only the SHA-256 of
 * the token is stored (the token carries 256 random bits, so a fast hash is enough); `tokenHint`
 * is the masked form (`kw_…wxyz`) every response shows.
 */
@Entity({ name: 'access_tokens' })
export class AccessToken {
  // Assigned by the service, so that the created row can be read back by id.
  @PrimaryColumn({ type: 'uuid' })
  id!: string;

  @Column({ type: 'text' })
  name!: string;

  @Column({ name: 'token_hash', type: 'text', select: false })
  tokenHash!: string;

  @Column({ name: 'token_hint', type: 'text' })
  tokenHint!: string;

  /** Provider ids the token may call; null means every provider. */
  @Column({ type: 'text', array: true, nullable: true })
  providers!: string[] | null;

  /** Models the token may use; null means every model. */
  @Column({ type: 'text', array: true, nullable: true })
  models!: string[] | null;

  @Column({ name: 'expires_at', type: 'timestamptz', nullable: true })
  expiresAt!: Date | null;

  @Column({ name: 'rate_limit_per_minute', type: 'integer', nullable: true })
  rateLimitPerMinute!: number | null;

  /** Addresses and CIDR ranges calls may come from; null means anywhere. */
  @Column({ name: 'allowed_ips', type: 'text', array: true, nullable: true })
  allowedIps!: string[] | null;

  /** Endpoint groups and rights granted beyond inference (see TOKEN_SCOPES); empty by default. */
  @Column({ type: 'text', array: true, default: () => "'{}'" })
  scopes!: string[];

  @Column({ name: 'revoked_at', type: 'timestamptz', nullable: true })
  revokedAt!: Date | null;

  @Column({ name: 'revoked_by', type: 'text', nullable: true })
  revokedBy!: string | null;

  @Column({ name: 'last_used_at', type: 'timestamptz', nullable: true })
  lastUsedAt!: Date | null;

  @Column({ name: 'created_by', type: 'text', nullable: true })
  createdBy!: string | null;

  @CreateDateColumn({ name: 'created_at', type: 'timestamptz' })
  createdAt!: Date;
}
