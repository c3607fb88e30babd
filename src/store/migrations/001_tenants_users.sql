-- OrbitDesk 001: tenants and their users.
-- Every tenant-owned table carries tenant_id (ARCHITECTURE.md rule 3).

CREATE TABLE tenants (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name        text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    slug        text NOT NULL UNIQUE
                CHECK (slug ~ '^[a-z0-9][a-z0-9-]{0,62}$'),
    status      text NOT NULL DEFAULT 'pending'
                CHECK (status IN ('pending', 'active', 'rejected',
                                  'suspended')),
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE users (
    id             uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    -- NULL only for SUPERADMIN, who belongs to no tenant
    tenant_id      uuid REFERENCES tenants (id) ON DELETE CASCADE,
    email          text NOT NULL CHECK (position('@' IN email) > 1),
    name           text NOT NULL,
    password_hash  text NOT NULL,              -- argon2id, encoded
    role           text NOT NULL
                   CHECK (role IN ('SUPERADMIN', 'ADMIN', 'MANAGER', 'AGENT')),
    is_active      boolean NOT NULL DEFAULT true,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    CHECK ((role = 'SUPERADMIN') = (tenant_id IS NULL))
);

-- one login per address across tenants: login needs no tenant name
CREATE UNIQUE INDEX users_email_key ON users (lower(email));
CREATE INDEX users_tenant_idx ON users (tenant_id, created_at);
