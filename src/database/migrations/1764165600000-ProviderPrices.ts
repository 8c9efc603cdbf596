import type { MigrationInterface, QueryRunner } from 'typeorm';

export class ProviderPrices1764165600000 implements MigrationInterface {
  name = 'ProviderPrices1764165600000';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`
      CREATE TABLE provider_prices (
        provider_id text NOT NULL,
        model text NOT NULL,
        input numeric(12, 6) NOT NULL CHECK (input >= 0),
        output numeric(12, 6) NOT NULL CHECK (output >= 0),
        cached_input numeric(12, 6) CHECK (cached_input >= 0),
        updated_by text,
        updated_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (provider_id, model)
      )`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`DROP TABLE provider_prices`);
  }
}
