import type { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * Limits that hold under concurrency: a `reserved` counter beside each key's settled usage,
 * budgets on access tokens, a row per open reservation (so that one an instance lost on a crash
 * can be expired), and the two functions that reserve and settle in one round trip each. Token
 * scopes grant endpoint groups beyond inference.
 */
export class LimitsAndBudgets1764400000001 implements MigrationInterface {
  name = 'LimitsAndBudgets1764400000001';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`ALTER TABLE access_tokens ADD COLUMN scopes text[] NOT NULL DEFAULT '{}'`);
    await q.query(`ALTER TABLE api_keys ADD COLUMN usage_reserved numeric NOT NULL DEFAULT 0`);

    await q.query(`
      CREATE TABLE access_token_budgets (
        id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
        access_token_id uuid NOT NULL REFERENCES access_tokens (id) ON DELETE CASCADE,
        unit text NOT NULL CHECK (unit IN ('tokens', 'requests', 'usd')),
        period text NOT NULL CHECK (period IN ('daily', 'weekly', 'monthly', 'total')),
        "limit" numeric NOT NULL CHECK ("limit" > 0),
        used numeric NOT NULL DEFAULT 0,
        reserved numeric NOT NULL DEFAULT 0,
        reset_at timestamptz,
        created_at timestamptz NOT NULL DEFAULT now(),
        UNIQUE (access_token_id, unit, period)
      )`);

    await q.query(`
      CREATE TABLE limit_reservations (
        id uuid PRIMARY KEY,
        key_id uuid,
        access_token_id uuid,
        tokens numeric NOT NULL,
        usd numeric NOT NULL,
        requests numeric NOT NULL,
        expires_at timestamptz NOT NULL
      )`);
    await q.query(`CREATE INDEX limit_reservations_expiry_idx ON limit_reservations (expires_at)`);

    // The end of the period `at` lies in (UTC; ISO weeks start on Monday); null for lifetime.
    await q.query(`
      CREATE FUNCTION keyward_period_end(period text, at timestamptz) RETURNS timestamptz
      LANGUAGE sql IMMUTABLE AS $$
        SELECT CASE period
          WHEN 'daily' THEN (date_trunc('day', at AT TIME ZONE 'UTC') + interval '1 day') AT TIME ZONE 'UTC'
          WHEN 'weekly' THEN (date_trunc('week', at AT TIME ZONE 'UTC') + interval '1 week') AT TIME ZONE 'UTC'
          WHEN 'monthly' THEN (date_trunc('month', at AT TIME ZONE 'UTC') + interval '1 month') AT TIME ZONE 'UTC'
          ELSE NULL END
      $$`);

    // All or nothing: the key row, then the token's budgets (always in this order, so two
    // reservations never deadlock), are locked and checked; only when the worst case fits every
    // one are they all raised. A counter whose period ended counts from zero at once.
    await q.query(`
      CREATE FUNCTION keyward_reserve(p_id uuid, p_key uuid, p_token uuid, p_tokens numeric, p_usd numeric,
                                      p_requests numeric, p_ttl_seconds integer) RETURNS jsonb
      LANGUAGE plpgsql AS $$
      DECLARE
        k record;
        b record;
        cur numeric;
        amt numeric;
        nxt timestamptz;
        counters jsonb := '[]'::jsonb;
        key_limited boolean := false;
      BEGIN
        -- Counters are hot rows: their commits do not wait for the disk (see the README).
        PERFORM set_config('synchronous_commit', 'off', true);
        IF p_key IS NOT NULL THEN
          SELECT id, usage_limit, usage_unit, usage_period, usage_current, usage_reserved, reset_at INTO k
            FROM api_keys WHERE id = p_key AND usage_limit IS NOT NULL AND usage_unit IS NOT NULL FOR UPDATE;
          IF FOUND THEN
            key_limited := true;
            IF k.reset_at IS NOT NULL AND k.reset_at <= now() THEN
              cur := 0; nxt := keyward_period_end(k.usage_period, now());
            ELSE
              cur := k.usage_current; nxt := k.reset_at;
            END IF;
            amt := CASE k.usage_unit WHEN 'tokens' THEN p_tokens WHEN 'requests' THEN p_requests ELSE p_usd END;
            IF cur + k.usage_reserved + amt > k.usage_limit THEN
              RETURN jsonb_build_object('ok', false, 'scope', 'key', 'id', k.id, 'unit', k.usage_unit,
                'period', k.usage_period, 'limit', k.usage_limit, 'used', cur + k.usage_reserved,
                'amount', amt, 'resetAt', nxt);
            END IF;
            counters := counters || jsonb_build_object('id', 'key:' || k.id, 'used', cur + k.usage_reserved + amt);
          END IF;
        END IF;
        IF p_token IS NOT NULL THEN
          FOR b IN SELECT id, unit, period, "limit", used, reserved, reset_at FROM access_token_budgets
                    WHERE access_token_id = p_token ORDER BY id FOR UPDATE LOOP
            IF b.reset_at IS NOT NULL AND b.reset_at <= now() THEN
              cur := 0; nxt := keyward_period_end(b.period, now());
            ELSE
              cur := b.used; nxt := b.reset_at;
            END IF;
            amt := CASE b.unit WHEN 'tokens' THEN p_tokens WHEN 'requests' THEN p_requests ELSE p_usd END;
            IF cur + b.reserved + amt > b."limit" THEN
              RETURN jsonb_build_object('ok', false, 'scope', 'token', 'id', b.id, 'unit', b.unit,
                'period', b.period, 'limit', b."limit", 'used', cur + b.reserved, 'amount', amt, 'resetAt', nxt);
            END IF;
            counters := counters || jsonb_build_object('id', 'budget:' || b.id, 'used', cur + b.reserved + amt);
          END LOOP;
        END IF;
        IF key_limited THEN
          UPDATE api_keys SET
            usage_current = CASE WHEN reset_at IS NOT NULL AND reset_at <= now() THEN 0 ELSE usage_current END,
            reset_at = CASE WHEN reset_at IS NOT NULL AND reset_at <= now()
                            THEN keyward_period_end(usage_period, now()) ELSE reset_at END,
            usage_reserved = usage_reserved
              + CASE usage_unit WHEN 'tokens' THEN p_tokens WHEN 'requests' THEN p_requests ELSE p_usd END
          WHERE id = p_key;
        END IF;
        IF p_token IS NOT NULL THEN
          UPDATE access_token_budgets SET
            used = CASE WHEN reset_at IS NOT NULL AND reset_at <= now() THEN 0 ELSE used END,
            reset_at = CASE WHEN reset_at IS NOT NULL AND reset_at <= now()
                            THEN keyward_period_end(period, now()) ELSE reset_at END,
            reserved = reserved + CASE unit WHEN 'tokens' THEN p_tokens WHEN 'requests' THEN p_requests ELSE p_usd END
          WHERE access_token_id = p_token;
        END IF;
        INSERT INTO limit_reservations (id, key_id, access_token_id, tokens, usd, requests, expires_at)
          VALUES (p_id, p_key, p_token, p_tokens, p_usd, p_requests, now() + make_interval(secs => p_ttl_seconds));
        RETURN jsonb_build_object('ok', true, 'counters', counters);
      END
      $$`);

    // Ids of charges already counted, so that a retried charge is never counted twice.
    await q.query(`
      CREATE TABLE limit_charges (
        id uuid PRIMARY KEY,
        created_at timestamptz NOT NULL DEFAULT now()
      )`);

    // Gives back what a reservation held and counts the actual usage, on the key and on each
    // budget of the token; a counter whose period ended starts from zero first.
    await q.query(`
      CREATE FUNCTION keyward_apply(p_key uuid, p_token uuid, r_tokens numeric, r_usd numeric, r_requests numeric,
                                    a_tokens numeric, a_usd numeric, a_requests numeric) RETURNS void
      LANGUAGE plpgsql AS $$
      BEGIN
        IF p_key IS NOT NULL THEN
          UPDATE api_keys SET
            usage_current = CASE WHEN reset_at IS NOT NULL AND reset_at <= now() THEN 0 ELSE usage_current END
              + CASE usage_unit WHEN 'tokens' THEN a_tokens WHEN 'requests' THEN a_requests WHEN 'usd' THEN a_usd ELSE 0 END,
            reset_at = CASE WHEN reset_at IS NOT NULL AND reset_at <= now()
                            THEN keyward_period_end(usage_period, now()) ELSE reset_at END,
            usage_reserved = GREATEST(0, usage_reserved
              - CASE usage_unit WHEN 'tokens' THEN r_tokens WHEN 'requests' THEN r_requests WHEN 'usd' THEN r_usd ELSE 0 END)
          -- A key without a limit has nothing to count (and its row is not rewritten per call).
          WHERE id = p_key AND usage_unit IS NOT NULL;
        END IF;
        IF p_token IS NOT NULL THEN
          UPDATE access_token_budgets SET
            used = CASE WHEN reset_at IS NOT NULL AND reset_at <= now() THEN 0 ELSE used END
              + CASE unit WHEN 'tokens' THEN a_tokens WHEN 'requests' THEN a_requests ELSE a_usd END,
            reset_at = CASE WHEN reset_at IS NOT NULL AND reset_at <= now()
                            THEN keyward_period_end(period, now()) ELSE reset_at END,
            reserved = GREATEST(0, reserved
              - CASE unit WHEN 'tokens' THEN r_tokens WHEN 'requests' THEN r_requests ELSE r_usd END)
          WHERE access_token_id = p_token;
        END IF;
      END
      $$`);

    // Ends a reservation at its actual usage (a release settles at zero). False when it was not
    // open any more (settled already, or expired and counted at its worst case): nothing changes.
    await q.query(`
      CREATE FUNCTION keyward_settle(p_id uuid, a_tokens numeric, a_usd numeric, a_requests numeric) RETURNS boolean
      LANGUAGE plpgsql AS $$
      DECLARE
        r record;
      BEGIN
        PERFORM set_config('synchronous_commit', 'off', true);
        DELETE FROM limit_reservations WHERE id = p_id RETURNING * INTO r;
        IF NOT FOUND THEN RETURN false; END IF;
        PERFORM keyward_apply(r.key_id, r.access_token_id, r.tokens, r.usd, r.requests, a_tokens, a_usd, a_requests);
        RETURN true;
      END
      $$`);

    // Counts usage that held no reservation here (reported usage, use admitted in memory while
    // the store was away, the mirror of Redis counters); once per charge id.
    await q.query(`
      CREATE FUNCTION keyward_charge(p_id uuid, p_key uuid, p_token uuid, a_tokens numeric, a_usd numeric,
                                     a_requests numeric) RETURNS boolean
      LANGUAGE plpgsql AS $$
      BEGIN
        INSERT INTO limit_charges (id) VALUES (p_id) ON CONFLICT DO NOTHING;
        IF NOT FOUND THEN RETURN false; END IF;
        PERFORM keyward_apply(p_key, p_token, 0, 0, 0, a_tokens, a_usd, a_requests);
        RETURN true;
      END
      $$`);

    // Reservations whose instance never settled them (it crashed, or lost the database for
    // longer than a reservation lives) are counted at their worst case: the provider may have
    // done the work, and nothing says it did not.
    await q.query(`
      CREATE FUNCTION keyward_expire_reservations(p_limit integer) RETURNS integer
      LANGUAGE plpgsql AS $$
      DECLARE
        r record;
        n integer := 0;
      BEGIN
        FOR r IN DELETE FROM limit_reservations WHERE id IN (
                   SELECT id FROM limit_reservations WHERE expires_at <= now()
                    ORDER BY expires_at LIMIT p_limit FOR UPDATE SKIP LOCKED)
                 RETURNING * LOOP
          PERFORM keyward_apply(r.key_id, r.access_token_id, r.tokens, r.usd, r.requests, r.tokens, r.usd, r.requests);
          n := n + 1;
        END LOOP;
        DELETE FROM limit_charges WHERE created_at < now() - interval '2 days';
        RETURN n;
      END
      $$`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`DROP FUNCTION keyward_expire_reservations(integer)`);
    await q.query(`DROP FUNCTION keyward_charge(uuid, uuid, uuid, numeric, numeric, numeric)`);
    await q.query(`DROP FUNCTION keyward_settle(uuid, numeric, numeric, numeric)`);
    await q.query(`DROP FUNCTION keyward_apply(uuid, uuid, numeric, numeric, numeric, numeric, numeric, numeric)`);
    await q.query(`DROP TABLE limit_charges`);
    await q.query(`DROP FUNCTION keyward_reserve(uuid, uuid, uuid, numeric, numeric, numeric, integer)`);
    await q.query(`DROP FUNCTION keyward_period_end(text, timestamptz)`);
    await q.query(`DROP TABLE limit_reservations`);
    await q.query(`DROP TABLE access_token_budgets`);
    await q.query(`ALTER TABLE api_keys DROP COLUMN usage_reserved`);
    await q.query(`ALTER TABLE access_tokens DROP COLUMN scopes`);
  }
}
