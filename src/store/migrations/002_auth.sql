-- OrbitDesk 002: sessions (refresh tokens) and the audit log.

-- A refresh token is used once: using it marks it used and issues the next
-- of its family.  Presenting a used token again is theft: the family is
-- revoked.  Only the SHA-256 of a token is stored.
CREATE TABLE refresh_tokens (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    family_id   uuid NOT NULL,
    user_id     uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    token_hash  text NOT NULL UNIQUE,
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    used_at     timestamptz,
    revoked_at  timestamptz
);

CREATE INDEX refresh_tokens_family_idx ON refresh_tokens (family_id);
CREATE INDEX refresh_tokens_user_idx ON refresh_tokens (user_id);

-- Security-relevant actions, readable by a tenant's admins (their rows)
-- and by superadmins (all).  tenant_id is NULL for platform actions.
CREATE TABLE audit_logs (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id   uuid REFERENCES tenants (id) ON DELETE CASCADE,
    user_id     uuid REFERENCES users (id) ON DELETE SET NULL,
    action      text NOT NULL,
    target      text,
    ip          inet,
    details     jsonb NOT NULL DEFAULT '{}',
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX audit_logs_tenant_idx ON audit_logs (tenant_id, id DESC);

-- the superadmin's tenant list pages on this order
CREATE INDEX tenants_created_idx ON tenants (created_at DESC, id DESC);
