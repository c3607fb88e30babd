-- OrbitDesk 004: API keys for integrations (spec: "REST API Access").
--
-- A key is "wcrm_" and 43 base64url characters (256 random bits).  Only its
-- SHA-256 (lowercase hex) is stored; the key itself is shown once, in the
-- answer to its creation.  prefix ("wcrm_" and the next 4 characters) tells
-- keys apart in lists.  A key works until it is revoked (is_active false,
-- revoked_at set), deleted, or past its expires_at.

CREATE TABLE api_keys (
    id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id     uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    name          text NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
    key_hash      text NOT NULL UNIQUE CHECK (key_hash ~ '^[0-9a-f]{64}$'),
    prefix        text NOT NULL CHECK (prefix ~ '^wcrm_'),
    scopes        text[] NOT NULL
                  CHECK (cardinality(scopes) > 0
                         AND scopes <@ ARRAY['contacts:read',
                             'contacts:write', 'conversations:read',
                             'messages:read', 'messages:send', 'flows:read',
                             'flows:trigger', 'templates:read']),
    expires_at    timestamptz,
    last_used_at  timestamptz,
    is_active     boolean NOT NULL DEFAULT true,
    revoked_at    timestamptz,
    created_by    uuid REFERENCES users (id) ON DELETE SET NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    CHECK (is_active = (revoked_at IS NULL))
);

-- the admin's list pages on this order; authentication looks keys up by
-- key_hash (its UNIQUE index)
CREATE INDEX api_keys_tenant_idx
    ON api_keys (tenant_id, created_at DESC, id DESC);


-- At most 20 active (not revoked) keys per tenant.  The count is a counter
-- kept by a trigger in the same statement as the write (ARCHITECTURE.md
-- rule 7), never a count(*): the upsert below locks the tenant's counter
-- row and tests the newest committed value, so two concurrent creations
-- cannot both take the 20th place.  An expired key counts until it is
-- revoked or deleted: expiry is a moment, not a write.
CREATE TABLE api_key_counts (
    tenant_id  uuid PRIMARY KEY REFERENCES tenants (id) ON DELETE CASCADE,
    active     integer NOT NULL DEFAULT 0 CHECK (active >= 0)
);

CREATE FUNCTION api_keys_count() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        IF NOT NEW.is_active THEN
            RETURN NULL;
        END IF;

        INSERT INTO api_key_counts AS c (tenant_id, active)
        VALUES (NEW.tenant_id, 1)
        ON CONFLICT (tenant_id) DO UPDATE SET active = c.active + 1
        WHERE c.active < 20;

        IF NOT FOUND THEN
            -- 23514: answered as a 400 with this message
            RAISE EXCEPTION USING ERRCODE = 'check_violation',
                MESSAGE = 'A tenant may have at most 20 active API keys: '
                          'revoke or delete one first';
        END IF;

    ELSIF TG_OP = 'DELETE' THEN
        IF OLD.is_active THEN
            UPDATE api_key_counts SET active = active - 1
            WHERE tenant_id = OLD.tenant_id;
        END IF;

    ELSIF OLD.is_active AND NOT NEW.is_active THEN
        UPDATE api_key_counts SET active = active - 1
        WHERE tenant_id = OLD.tenant_id;

    ELSIF NEW.is_active AND NOT OLD.is_active THEN
        RAISE EXCEPTION USING ERRCODE = 'check_violation',
            MESSAGE = 'A revoked API key cannot be reactivated';
    END IF;

    RETURN NULL;
END
$$;

CREATE TRIGGER api_keys_count
    AFTER INSERT OR DELETE OR UPDATE OF is_active ON api_keys
    FOR EACH ROW EXECUTE FUNCTION api_keys_count();
