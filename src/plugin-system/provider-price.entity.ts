import { Column, Entity, PrimaryColumn, UpdateDateColumn } from 'typeorm';

const numeric = { to: (v: number | null) => v, from: (v: string | null) => (v === null ? null : Number(v)) };

/** An admin's price for one model, in USD per million tokens; wins over the plugin's pricing.json. */
@Entity({ name: 'provider_prices' })
export class ProviderPrice {
  @PrimaryColumn({ name: 'provider_id', type: 'text' })
  providerId!: string;

  @PrimaryColumn({ type: 'text' })
  model!: string;

  @Column({ type: 'numeric', precision: 12, scale: 6, transformer: numeric })
  input!: number;

  @Column({ type: 'numeric', precision: 12, scale: 6, transformer: numeric })
  output!: number;

  @Column({ name: 'cached_input', type: 'numeric', precision: 12, scale: 6, nullable: true, transformer: numeric })
  cachedInput!: number | null;

  @Column({ name: 'updated_by', type: 'text', nullable: true })
  updatedBy!: string | null;

  @UpdateDateColumn({ name: 'updated_at', type: 'timestamptz' })
  updatedAt!: Date;
}
