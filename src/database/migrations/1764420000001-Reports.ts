import type { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * Rollups that reports can be built from: an access-token dimension, records without a key
 * (Keyward's own refusals: no usable key, a usage limit, a rate limit), where a record came from
 * (the gateway or an application's report), the error type of failures, and how many requests
 * had no price. The rollups are rebuilt from the events once, so past usage gains the new
 * dimensions too. Stored reports get their table.
 */
export class Reports1764420000001 implements MigrationInterface {
  name = 'Reports1764420000001';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`ALTER TABLE usage_rollups DROP CONSTRAINT usage_rollups_pkey`);
    await q.query(`
      ALTER TABLE usage_rollups
        ALTER COLUMN key_id DROP NOT NULL,
        ADD COLUMN access_token_id uuid,
        ADD COLUMN source text NOT NULL DEFAULT 'gateway' CHECK (source IN ('gateway', 'reported')),
        ADD COLUMN error_type text NOT NULL DEFAULT '',
        ADD COLUMN unpriced_requests bigint NOT NULL DEFAULT 0`);
    // A keyless row is one group too: NULLS NOT DISTINCT (PostgreSQL 15) makes it conflict with itself.
    await q.query(`
      ALTER TABLE usage_rollups ADD CONSTRAINT usage_rollups_identity
        UNIQUE NULLS NOT DISTINCT (bucket, period_start, key_id, access_token_id, provider, model, source, error_type)`);
    await q.query(`CREATE INDEX usage_rollups_token_idx ON usage_rollups (access_token_id, bucket, period_start)`);
    await q.query(`CREATE INDEX usage_rollups_key_idx ON usage_rollups (key_id, bucket, period_start)`);

    await q.query(`TRUNCATE usage_rollups`);
    for (const [bucket, trunc] of [
      ['hour', 'hour'],
      ['day', 'day'],
    ]) {
      await q.query(`
        INSERT INTO usage_rollups (bucket, period_start, key_id, access_token_id, provider, model, source, error_type,
          requests, errors, input_tokens, output_tokens, total_tokens, cost, latency_ms_sum, unpriced_requests)
        SELECT '${bucket}', date_trunc('${trunc}', e."timestamp" AT TIME ZONE 'UTC') AT TIME ZONE 'UTC',
               e.key_id, e.access_token_id, e.provider, coalesce(e.model, ''), e.source,
               CASE WHEN e.success THEN '' ELSE coalesce(e.error_type, 'error') END,
               count(*), count(*) FILTER (WHERE NOT e.success), sum(e.input_tokens), sum(e.output_tokens),
               sum(e.total_tokens), sum(e.cost), sum(e.latency_ms), count(*) FILTER (WHERE e.unpriced)
          FROM usage_events e
         GROUP BY 2, 3, 4, 5, 6, 7, 8`);
    }

    await q.query(`
      CREATE TABLE usage_reports (
        id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
        kind text NOT NULL CHECK (kind IN ('daily', 'monthly', 'custom')),
        period_start timestamptz NOT NULL,
        period_end timestamptz NOT NULL CHECK (period_end > period_start),
        -- 'schedule' for the reports Keyward makes itself, else the admin who asked.
        generated_by text NOT NULL,
        generated_at timestamptz NOT NULL DEFAULT now(),
        data jsonb NOT NULL
      )`);
    // The scheduled report of a period exists once, however many instances race to make it.
    await q.query(`
      CREATE UNIQUE INDEX usage_reports_scheduled_idx ON usage_reports (kind, period_start)
        WHERE generated_by = 'schedule'`);
    await q.query(`CREATE INDEX usage_reports_generated_idx ON usage_reports (generated_at DESC)`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`DROP TABLE usage_reports`);
    await q.query(`DELETE FROM usage_rollups WHERE key_id IS NULL`);
    await q.query(`ALTER TABLE usage_rollups DROP CONSTRAINT usage_rollups_identity`);
    await q.query(`DROP INDEX usage_rollups_token_idx`);
    await q.query(`DROP INDEX usage_rollups_key_idx`);
    await q.query(`
      CREATE TEMP TABLE merged_rollups AS
      SELECT bucket, period_start, key_id, min(provider) AS provider, model, sum(requests) AS requests,
             sum(errors) AS errors, sum(input_tokens) AS input_tokens, sum(output_tokens) AS output_tokens,
             sum(total_tokens) AS total_tokens, sum(cost) AS cost, sum(latency_ms_sum) AS latency_ms_sum
        FROM usage_rollups GROUP BY bucket, period_start, key_id, model`);
    await q.query(`TRUNCATE usage_rollups`);
    await q.query(`
      ALTER TABLE usage_rollups
        DROP COLUMN access_token_id, DROP COLUMN source, DROP COLUMN error_type, DROP COLUMN unpriced_requests,
        ALTER COLUMN key_id SET NOT NULL`);
    await q.query(`
      INSERT INTO usage_rollups (bucket, period_start, key_id, provider, model, requests, errors, input_tokens,
        output_tokens, total_tokens, cost, latency_ms_sum)
      SELECT * FROM merged_rollups`);
    await q.query(`DROP TABLE merged_rollups`);
    await q.query(`ALTER TABLE usage_rollups ADD PRIMARY KEY (bucket, key_id, model, period_start)`);
  }
}
