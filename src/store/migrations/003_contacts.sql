-- OrbitDesk 003: contacts, the per-tenant counters, and the domain events.
--
-- Every write to contacts (src/api/orbit_api_contacts.c, and later the
-- inbound pipeline) is one statement that also keeps tenant_counters and
-- appends its domain_events, so the three never disagree.

CREATE TABLE contacts (
    id             uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id      uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    phone          text NOT NULL CHECK (phone ~ '^\+[1-9][0-9]{7,14}$'),
    name           text CHECK (length(name) BETWEEN 1 AND 200),
    email          text CHECK (length(email) <= 254),
    tags           text[] NOT NULL DEFAULT '{}'
                   CHECK (cardinality(tags) <= 50),
    custom_fields  jsonb NOT NULL DEFAULT '{}'
                   CHECK (jsonb_typeof(custom_fields) = 'object'),
    opted_in       boolean NOT NULL DEFAULT false,
    avatar_url     text CHECK (length(avatar_url) <= 2048),
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT contacts_tenant_phone_key UNIQUE (tenant_id, phone)
);

-- the list's keyset order, newest first
CREATE INDEX contacts_tenant_created_idx
    ON contacts (tenant_id, created_at DESC, id DESC);

-- ?tag=VIP (tags @> ARRAY['VIP'])
CREATE INDEX contacts_tags_idx ON contacts USING gin (tags);

-- ?search= is a case-insensitive substring of name, phone or email: the
-- handler matches  lower(name \n phone \n email) LIKE '%term%'.  A trigram
-- index serves that; pg_trgm is a "trusted" extension since PostgreSQL 13,
-- so the database's owner (the orbit role: tools/orbit creates the
-- database OWNER orbit) may create it without being superuser, and Debian
-- ships it with the server.  Where it cannot be created (the role does not
-- own the database, or the files are missing) the migration still passes:
-- search then filters the tenant's rows along the keyset index, which is
-- fine for tens of thousands of contacts per tenant.
DO $$
BEGIN
    CREATE EXTENSION IF NOT EXISTS pg_trgm;

    CREATE INDEX contacts_search_idx ON contacts USING gin
        ((lower(coalesce(name, '') || E'\n' || phone || E'\n'
                || coalesce(email, ''))) gin_trgm_ops);
EXCEPTION
    WHEN insufficient_privilege OR undefined_file OR undefined_object THEN
        RAISE WARNING 'pg_trgm is not available (%): contact search will '
                      'scan each tenant''s rows', SQLERRM;
END
$$;


-- Figures kept in the same statement as the writes they count, so that a
-- total never needs a count(*) over a tenant's rows (ARCHITECTURE rule 7).
-- One row per tenant, made by the first write that counts; later
-- resources add their columns.
CREATE TABLE tenant_counters (
    tenant_id   uuid PRIMARY KEY REFERENCES tenants (id) ON DELETE CASCADE,
    contacts    bigint NOT NULL DEFAULT 0 CHECK (contacts >= 0),
    updated_at  timestamptz NOT NULL DEFAULT now()
);


-- What happened, for the flow engine's triggers ("contact created", "tag
-- added") and whoever else consumes it later, in commit order of id.
-- Written by the statement that made the change: an event exists exactly
-- when its change committed.
--   contact_created  {contactId, phone, tags, source: api|import}
--   contact_deleted  {contactId, phone}
--   tag_added        {contactId, tag, source}
--   tag_removed      {contactId, tag, source}
CREATE TABLE domain_events (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id   uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    type        text NOT NULL,
    payload     jsonb NOT NULL DEFAULT '{}',
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX domain_events_tenant_idx ON domain_events (tenant_id, id);
