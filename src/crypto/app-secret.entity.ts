import { Column, CreateDateColumn, Entity, PrimaryColumn } from 'typeorm';

/**
 * Server-wide secrets (the root from which JWT, session and audit-chain keys are derived),
 * kept in the database so that every instance shares them, and sealed with the master key so
 * that a database dump alone does not reveal them.
 */
@Entity({ name: 'app_secrets' })
export class AppSecret {
  @PrimaryColumn({ type: 'text' })
  name!: string;

  @Column({ type: 'bytea' })
  envelope!: Buffer;

  @CreateDateColumn({ name: 'created_at', type: 'timestamptz' })
  createdAt!: Date;
}
