import type { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * Access tokens for applications, key health for failover, usage events (partitioned by month)
 * with hourly and daily rollups, and alert events.
 */
export class Gateway1764338400000 implements MigrationInterface {
  name = 'Gateway1764338400000';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`
      CREATE TABLE access_tokens (
        id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
        name text NOT NULL CHECK (length(name) BETWEEN 1 AND 120),
        -- SHA-256 of the token: the token has 256 random bits, so a fast hash is enough.
        token_hash text NOT NULL UNIQUE,
        token_hint text NOT NULL,
        providers text[],
        models text[],
        expires_at timestamptz,
        rate_limit_per_minute integer CHECK (rate_limit_per_minute > 0),
        allowed_ips text[],
        revoked_at timestamptz,
        revoked_by text,
        last_used_at timestamptz,
        created_by text,
        created_at timestamptz NOT NULL DEFAULT now()
      )`);

    await q.query(`
      ALTER TABLE api_keys
        ADD COLUMN health text NOT NULL DEFAULT 'healthy' CHECK (health IN ('healthy', 'unhealthy')),
        ADD COLUMN health_reason text,
        ADD COLUMN health_changed_at timestamptz,
        ADD COLUMN cooldown_until timestamptz`);

    await q.query(`
      CREATE TABLE usage_events (
        id uuid NOT NULL DEFAULT gen_random_uuid(),
        "timestamp" timestamptz NOT NULL,
        key_id uuid,
        provider text NOT NULL,
        access_token_id uuid,
        endpoint text NOT NULL,
        model text,
        input_tokens integer NOT NULL DEFAULT 0,
        output_tokens integer NOT NULL DEFAULT 0,
        cached_input_tokens integer NOT NULL DEFAULT 0,
        total_tokens integer NOT NULL DEFAULT 0,
        cost numeric(18, 8) NOT NULL DEFAULT 0,
        unpriced boolean NOT NULL DEFAULT false,
        latency_ms integer NOT NULL DEFAULT 0,
        success boolean NOT NULL,
        error_type text,
        status integer,
        attempt integer NOT NULL DEFAULT 1,
        stream boolean NOT NULL DEFAULT false,
        source text NOT NULL DEFAULT 'gateway' CHECK (source IN ('gateway', 'reported')),
        PRIMARY KEY (id, "timestamp")
      ) PARTITION BY RANGE ("timestamp")`);
    // Rows outside every monthly partition land here rather than failing; the scheduler creates
    // the coming months' partitions ahead of time.
    await q.query(`CREATE TABLE usage_events_default PARTITION OF usage_events DEFAULT`);
    await q.query(`CREATE INDEX usage_events_key_idx ON usage_events (key_id, "timestamp")`);

    await q.query(`
      CREATE TABLE usage_rollups (
        bucket text NOT NULL CHECK (bucket IN ('hour', 'day')),
        period_start timestamptz NOT NULL,
        key_id uuid NOT NULL,
        provider text NOT NULL,
        model text NOT NULL DEFAULT '',
        requests bigint NOT NULL DEFAULT 0,
        errors bigint NOT NULL DEFAULT 0,
        input_tokens bigint NOT NULL DEFAULT 0,
        output_tokens bigint NOT NULL DEFAULT 0,
        total_tokens bigint NOT NULL DEFAULT 0,
        cost numeric(18, 8) NOT NULL DEFAULT 0,
        latency_ms_sum bigint NOT NULL DEFAULT 0,
        PRIMARY KEY (bucket, key_id, model, period_start)
      )`);
    await q.query(`CREATE INDEX usage_rollups_period_idx ON usage_rollups (bucket, period_start)`);

    await q.query(`
      CREATE TABLE alert_events (
        id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
        kind text NOT NULL,
        severity text NOT NULL CHECK (severity IN ('info', 'warning', 'critical')),
        key_id uuid,
        message text NOT NULL,
        details jsonb,
        created_at timestamptz NOT NULL DEFAULT now(),
        acknowledged_at timestamptz,
        acknowledged_by text
      )`);
    await q.query(`CREATE INDEX alert_events_created_idx ON alert_events (created_at DESC)`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`DROP TABLE alert_events`);
    await q.query(`DROP TABLE usage_rollups`);
    await q.query(`DROP TABLE usage_events`);
    await q.query(
      `ALTER TABLE api_keys DROP COLUMN health, DROP COLUMN health_reason, DROP COLUMN health_changed_at, DROP COLUMN cooldown_until`,
    );
    await q.query(`DROP TABLE access_tokens`);
  }
}
