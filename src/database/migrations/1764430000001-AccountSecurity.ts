import type { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * Second factors (TOTP, recovery codes) and the owners' "require MFA for everyone" switch;
 * accounts that sign in through OpenID Connect only (no password); and a token version per
 * user that invalidates JWTs and console sessions when it moves.
 */
export class AccountSecurity1764430000001 implements MigrationInterface {
  name = 'AccountSecurity1764430000001';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`ALTER TABLE users ALTER COLUMN password_hash DROP NOT NULL`);
    await q.query(`ALTER TABLE users ADD COLUMN token_version integer NOT NULL DEFAULT 0`);
    await q.query(`ALTER TABLE users ADD COLUMN must_change_password boolean NOT NULL DEFAULT false`);
    // "issuer subject" of the OpenID Connect account this user signs in with.
    await q.query(`ALTER TABLE users ADD COLUMN sso_subject text`);
    await q.query(`CREATE UNIQUE INDEX users_sso_subject_key ON users (sso_subject) WHERE sso_subject IS NOT NULL`);

    await q.query(`
      CREATE TABLE mfa_factors (
        id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
        user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
        kind text NOT NULL DEFAULT 'totp' CHECK (kind IN ('totp')),
        -- The TOTP secret, sealed with the master key (AAD names the factor id).
        secret_envelope bytea NOT NULL,
        confirmed_at timestamptz,
        -- The last 30-second step accepted: a code is never accepted twice.
        last_used_step bigint NOT NULL DEFAULT 0,
        created_at timestamptz NOT NULL DEFAULT now()
      )`);
    // One factor per user; an unconfirmed enrolment is replaced by the next attempt.
    await q.query(`CREATE UNIQUE INDEX mfa_factors_user_key ON mfa_factors (user_id)`);

    await q.query(`
      CREATE TABLE mfa_recovery_codes (
        id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
        user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
        -- HMAC-SHA-256 of the normalised code under a key derived from the master key.
        code_hash text NOT NULL,
        used_at timestamptz,
        created_at timestamptz NOT NULL DEFAULT now()
      )`);
    await q.query(`CREATE UNIQUE INDEX mfa_recovery_codes_hash_key ON mfa_recovery_codes (user_id, code_hash)`);

    await q.query(`
      CREATE TABLE mfa_policy (
        id boolean PRIMARY KEY DEFAULT true CHECK (id),
        required_for_all boolean NOT NULL DEFAULT false,
        updated_by text,
        updated_at timestamptz NOT NULL DEFAULT now()
      )`);
    // No row until an owner sets the policy (a missing row reads as "not required"), so a fresh
    // database stays empty for `keyward backup restore`.
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`DROP TABLE mfa_policy`);
    await q.query(`DROP TABLE mfa_recovery_codes`);
    await q.query(`DROP TABLE mfa_factors`);
    await q.query(`DROP INDEX users_sso_subject_key`);
    await q.query(`ALTER TABLE users DROP COLUMN sso_subject`);
    await q.query(`ALTER TABLE users DROP COLUMN must_change_password`);
    await q.query(`ALTER TABLE users DROP COLUMN token_version`);
    await q.query(`DELETE FROM users WHERE password_hash IS NULL`);
    await q.query(`ALTER TABLE users ALTER COLUMN password_hash SET NOT NULL`);
  }
}
