-- OrbitDesk 005: conversations, the rooms of the real-time gateway.
--
-- A conversation is one contact on one channel.  The gateway lets an agent
-- join "conversation:{id}" only for a conversation of their tenant that
-- they may see: assigned to them, or any when they are manager or admin.
-- The inbox pipeline (messages, unread counts, statuses' history) builds
-- on this table.

CREATE TABLE conversations (
    id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id        uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    contact_id       uuid NOT NULL REFERENCES contacts (id) ON DELETE CASCADE,
    channel          text NOT NULL CHECK (channel IN ('whatsapp', 'telegram',
                     'messenger', 'instagram', 'email', 'sms', 'livechat',
                     'api')),
    status           text NOT NULL DEFAULT 'open' CHECK (status IN ('open',
                     'assigned', 'pending', 'resolved')),
    assignee_id      uuid REFERENCES users (id) ON DELETE SET NULL,
    tags             text[] NOT NULL DEFAULT '{}',
    unread_count     integer NOT NULL DEFAULT 0 CHECK (unread_count >= 0),
    last_message_at  timestamptz,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now()
);

-- the inbox's order: newest activity first, per tenant
CREATE INDEX conversations_tenant_activity_idx
    ON conversations (tenant_id, last_message_at DESC NULLS LAST, id DESC);

CREATE INDEX conversations_assignee_idx
    ON conversations (assignee_id) WHERE assignee_id IS NOT NULL;

CREATE INDEX conversations_contact_idx ON conversations (contact_id);
