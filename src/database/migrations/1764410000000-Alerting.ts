import type { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * Alert rules, channels (secrets as envelopes), the alerts they raise and the outbox that
 * delivers them. Two instances evaluating the same usage race on `alerts_active_key`: one row
 * wins, and only the winner writes the deliveries, which `alert_deliveries_once` keeps single.
 */
export class Alerting1764410000000 implements MigrationInterface {
  name = 'Alerting1764410000000';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`
      CREATE TABLE alert_channels (
        id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
        name text NOT NULL CHECK (length(name) BETWEEN 1 AND 120),
        type text NOT NULL CHECK (type IN ('webhook', 'slack', 'email')),
        enabled boolean NOT NULL DEFAULT true,
        -- Also receives the scheduled reports.
        reports boolean NOT NULL DEFAULT false,
        -- What is not secret: webhook URL, SMTP host/port/user/from/to.
        config jsonb NOT NULL DEFAULT '{}',
        -- Envelope bound to the channel id: webhook signing secret, Slack URL or SMTP password.
        secret_ciphertext bytea,
        secret_hint text,
        created_by text,
        created_at timestamptz NOT NULL DEFAULT now(),
        updated_at timestamptz NOT NULL DEFAULT now()
      )`);

    await q.query(`
      CREATE TABLE alert_rules (
        id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
        name text NOT NULL CHECK (length(name) BETWEEN 1 AND 120),
        kind text NOT NULL CHECK (kind IN ('usage_threshold', 'cost_threshold', 'error_rate', 'key_invalid',
          'rotation_due', 'rotation_failed', 'expiring', 'no_healthy_key', 'projected_overrun')),
        severity text NOT NULL CHECK (severity IN ('info', 'warning', 'critical')),
        enabled boolean NOT NULL DEFAULT true,
        scope_type text NOT NULL DEFAULT 'all' CHECK (scope_type IN ('all', 'provider', 'key', 'token')),
        scope_id text,
        params jsonb NOT NULL DEFAULT '{}',
        channel_ids uuid[] NOT NULL DEFAULT '{}',
        created_by text,
        created_at timestamptz NOT NULL DEFAULT now(),
        updated_at timestamptz NOT NULL DEFAULT now(),
        CHECK ((scope_type = 'all') = (scope_id IS NULL))
      )`);

    await q.query(`
      CREATE TABLE alerts (
        id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
        rule_id uuid REFERENCES alert_rules (id) ON DELETE SET NULL,
        kind text NOT NULL,
        severity text NOT NULL CHECK (severity IN ('info', 'warning', 'critical')),
        -- What the condition is about and which threshold/period: one firing per key.
        dedupe_key text NOT NULL,
        subject_type text,
        subject_id text,
        message text NOT NULL,
        details jsonb NOT NULL DEFAULT '{}',
        state text NOT NULL DEFAULT 'open' CHECK (state IN ('open', 'acknowledged', 'resolved')),
        -- True while the condition holds; the rule re-arms once it has cleared.
        condition_active boolean NOT NULL DEFAULT true,
        opened_at timestamptz NOT NULL DEFAULT now(),
        acknowledged_at timestamptz,
        acknowledged_by text,
        resolved_at timestamptz,
        resolved_by text,
        cleared_at timestamptz
      )`);
    await q.query(
      `CREATE UNIQUE INDEX alerts_active_key ON alerts (rule_id, dedupe_key) WHERE condition_active AND rule_id IS NOT NULL`,
    );
    await q.query(`CREATE INDEX alerts_opened_idx ON alerts (opened_at DESC)`);
    await q.query(`CREATE INDEX alerts_state_idx ON alerts (state) WHERE state <> 'resolved'`);

    await q.query(`
      CREATE TABLE alert_deliveries (
        id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
        channel_id uuid NOT NULL REFERENCES alert_channels (id) ON DELETE CASCADE,
        purpose text NOT NULL CHECK (purpose IN ('alert', 'resolved', 'test', 'report')),
        alert_id uuid REFERENCES alerts (id) ON DELETE CASCADE,
        report_id text,
        payload jsonb NOT NULL,
        status text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'delivered', 'failed')),
        attempts integer NOT NULL DEFAULT 0,
        next_attempt_at timestamptz NOT NULL DEFAULT now(),
        -- An instance sending it holds it until then; a crash mid-send frees it again.
        locked_until timestamptz,
        last_status_code integer,
        last_error text,
        delivered_at timestamptz,
        created_at timestamptz NOT NULL DEFAULT now()
      )`);
    await q.query(
      `CREATE UNIQUE INDEX alert_deliveries_once ON alert_deliveries (channel_id, purpose, alert_id) WHERE alert_id IS NOT NULL`,
    );
    await q.query(
      `CREATE UNIQUE INDEX alert_deliveries_report_once ON alert_deliveries (channel_id, report_id) WHERE report_id IS NOT NULL`,
    );
    await q.query(
      `CREATE INDEX alert_deliveries_due_idx ON alert_deliveries (next_attempt_at) WHERE status = 'pending'`,
    );

    await q.query(`
      CREATE TABLE alert_delivery_attempts (
        id bigserial PRIMARY KEY,
        delivery_id uuid NOT NULL REFERENCES alert_deliveries (id) ON DELETE CASCADE,
        attempt integer NOT NULL,
        ok boolean NOT NULL,
        status_code integer,
        error text,
        duration_ms integer NOT NULL,
        at timestamptz NOT NULL DEFAULT now()
      )`);
    await q.query(`CREATE INDEX alert_delivery_attempts_idx ON alert_delivery_attempts (delivery_id, attempt)`);

    // Error-rate rules count the last minutes of events across keys; token rules read by token.
    await q.query(`CREATE INDEX IF NOT EXISTS usage_events_time_idx ON usage_events ("timestamp")`);
    await q.query(`CREATE INDEX IF NOT EXISTS usage_events_token_idx ON usage_events (access_token_id, "timestamp")`);
  }

  async down(q: QueryRunner): Promise<void> {
    // The usage_events indexes stay: other features may rely on them.
    await q.query(`DROP TABLE alert_delivery_attempts`);
    await q.query(`DROP TABLE alert_deliveries`);
    await q.query(`DROP TABLE alerts`);
    await q.query(`DROP TABLE alert_rules`);
    await q.query(`DROP TABLE alert_channels`);
  }
}
