import type { MigrationInterface, QueryRunner } from 'typeorm';

/** The spec's APIKey (secrets as envelopes only) and the rotation history. */
export class KeyVault1764252000000 implements MigrationInterface {
  name = 'KeyVault1764252000000';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`
      CREATE TABLE api_keys (
        id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
        provider text NOT NULL,
        name text NOT NULL CHECK (length(name) BETWEEN 1 AND 120),
        -- Envelope (src/crypto/envelope.ts) bound to id, provider and secret_version. NULL once
        -- revoked: a revoked secret is destroyed, not merely flagged.
        secret_ciphertext bytea,
        secret_hint text NOT NULL,
        secret_version integer NOT NULL DEFAULT 1,
        -- HMAC-SHA256 of the secret under a server key: finds duplicates without decrypting.
        fingerprint text NOT NULL,
        external_id text,
        management_ciphertext bytea,
        management_hint text,
        organization_id text,
        project_id text,
        active boolean NOT NULL DEFAULT true,
        revoked_at timestamptz,
        revoked_by text,
        expires_at timestamptz,
        last_used_at timestamptz,
        rotation_schedule text,
        next_rotation_at timestamptz,
        last_rotated_at timestamptz,
        priority integer NOT NULL DEFAULT 100 CHECK (priority BETWEEN 0 AND 1000),
        weight integer NOT NULL DEFAULT 1 CHECK (weight BETWEEN 1 AND 1000),
        usage_limit numeric(20, 6) CHECK (usage_limit > 0),
        usage_unit text CHECK (usage_unit IN ('tokens', 'requests', 'usd')),
        usage_period text CHECK (usage_period IN ('daily', 'weekly', 'monthly', 'never')),
        usage_current numeric(20, 6) NOT NULL DEFAULT 0,
        reset_at timestamptz,
        last_verified_at timestamptz,
        last_verification jsonb,
        created_by text,
        created_at timestamptz NOT NULL DEFAULT now(),
        updated_at timestamptz NOT NULL DEFAULT now(),
        CHECK ((usage_limit IS NULL) = (usage_unit IS NULL) AND (usage_limit IS NULL) = (usage_period IS NULL)),
        CHECK (active OR revoked_at IS NOT NULL)
      )`);
    await q.query(`CREATE UNIQUE INDEX api_keys_fingerprint_key ON api_keys (fingerprint)`);
    await q.query(`CREATE INDEX api_keys_provider_idx ON api_keys (provider, active, priority)`);
    await q.query(`CREATE INDEX api_keys_created_idx ON api_keys (created_at, id)`);
    await q.query(`CREATE INDEX api_keys_due_rotation_idx ON api_keys (next_rotation_at) WHERE active`);
    await q.query(`CREATE INDEX api_keys_reset_idx ON api_keys (reset_at) WHERE reset_at IS NOT NULL`);

    await q.query(`
      CREATE TABLE key_rotations (
        id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
        key_id uuid NOT NULL REFERENCES api_keys (id) ON DELETE CASCADE,
        trigger text NOT NULL CHECK (trigger IN ('manual', 'schedule')),
        source text NOT NULL CHECK (source IN ('admin', 'provisioned', 'none')),
        status text NOT NULL CHECK (status IN ('completed', 'retiring', 'retired', 'retire_failed', 'failed', 'needs_admin')),
        from_version integer NOT NULL,
        to_version integer,
        old_hint text NOT NULL,
        new_hint text,
        -- Kept so that a rotated-out secret cannot be stored again unnoticed; never the secret.
        old_fingerprint text,
        old_external_id text,
        grace_until timestamptz,
        retired_at timestamptz,
        retire_attempts integer NOT NULL DEFAULT 0,
        error text,
        actor text,
        created_at timestamptz NOT NULL DEFAULT now()
      )`);
    await q.query(`CREATE INDEX key_rotations_key_idx ON key_rotations (key_id, created_at DESC)`);
    await q.query(`CREATE INDEX key_rotations_fingerprint_idx ON key_rotations (old_fingerprint)`);
    await q.query(`CREATE INDEX key_rotations_retiring_idx ON key_rotations (grace_until) WHERE status = 'retiring'`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`DROP TABLE key_rotations`);
    await q.query(`DROP TABLE api_keys`);
  }
}
