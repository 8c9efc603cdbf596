import type { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * IP allowlists for people (per role and per user), per-account sign-in lockout, and signed
 * checkpoints of the audit chain's head (append-only, like the audit log).
 */
export class AdminSecurity1764440000000 implements MigrationInterface {
  name = 'AdminSecurity1764440000000';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`
      CREATE TABLE ip_allow_rules (
        id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
        role text CHECK (role IN ('owner', 'admin', 'operator', 'auditor')),
        user_id uuid REFERENCES users (id) ON DELETE CASCADE,
        cidr text NOT NULL CHECK (length(cidr) BETWEEN 2 AND 64),
        note text CHECK (length(note) <= 200),
        created_by uuid,
        created_at timestamptz NOT NULL DEFAULT now(),
        -- A rule is for one role or for one user, never both, never neither.
        CHECK ((role IS NULL) <> (user_id IS NULL))
      )`);
    await q.query(`CREATE UNIQUE INDEX ip_allow_rules_role_uq ON ip_allow_rules (role, cidr) WHERE role IS NOT NULL`);
    await q.query(
      `CREATE UNIQUE INDEX ip_allow_rules_user_uq ON ip_allow_rules (user_id, cidr) WHERE user_id IS NOT NULL`,
    );

    await q.query(`
      CREATE TABLE sign_in_lockouts (
        user_id uuid PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
        failures integer NOT NULL DEFAULT 0,
        -- Lockouts since the last successful sign-in: each one lasts twice as long as the last.
        lockouts integer NOT NULL DEFAULT 0,
        window_started_at timestamptz NOT NULL DEFAULT now(),
        last_failure_at timestamptz,
        last_failure_ip text,
        locked_until timestamptz
      )`);

    await q.query(`
      CREATE TABLE audit_checkpoints (
        id bigserial PRIMARY KEY,
        at timestamptz NOT NULL,
        seq bigint NOT NULL,
        hash text NOT NULL,
        signature text NOT NULL,
        reason text NOT NULL
      )`);
    await q.query(`CREATE INDEX audit_checkpoints_seq_idx ON audit_checkpoints (seq DESC)`);
    await q.query(`
      CREATE TRIGGER audit_checkpoints_no_update_delete
        BEFORE UPDATE OR DELETE ON audit_checkpoints
        FOR EACH ROW EXECUTE FUNCTION audit_log_append_only()`);
    await q.query(`
      CREATE TRIGGER audit_checkpoints_no_truncate
        BEFORE TRUNCATE ON audit_checkpoints
        FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only()`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`DROP TABLE audit_checkpoints`);
    await q.query(`DROP TABLE sign_in_lockouts`);
    await q.query(`DROP TABLE ip_allow_rules`);
  }
}
