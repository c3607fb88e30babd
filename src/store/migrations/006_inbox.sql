-- OrbitDesk 006: the inbox — channel connections, contact identities,
-- messages, the job queue, and the one call the inbound pipeline makes.
--
-- A provider's webhook becomes one call of orbit_inbound(items): it routes
-- each item to its tenant by (channel, account), upserts the contact and
-- the conversation, inserts the message once per provider message id,
-- keeps the counters and enqueues the flow trigger, all in the webhook's
-- one transaction (ARCHITECTURE.md, "Inbound message path").


-- A tenant's account on a channel.  account_id is the provider's name of
-- the account, unique per channel, and the key inbound webhooks are routed
-- by: WhatsApp's phone-number id, a Telegram bot's id, a page id, an inbox
-- address, a Twilio number, a live-chat widget key, an API channel's id.
-- credentials: AES-256-GCM of a JSON object (12-byte nonce, ciphertext,
-- 16-byte tag) under ENCRYPTION_KEY of the secrets file; never returned.
-- credentials_hint: the same keys, each value masked to its last four
-- characters, for the responses.
CREATE TABLE channel_connections (
    id                uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id         uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    channel           text NOT NULL CHECK (channel IN ('whatsapp', 'telegram',
                      'messenger', 'instagram', 'email', 'sms', 'livechat',
                      'api')),
    name              text NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
    account_id        text NOT NULL
                      CHECK (length(account_id) BETWEEN 1 AND 200),
    config            jsonb NOT NULL DEFAULT '{}'
                      CHECK (jsonb_typeof(config) = 'object'),
    credentials       bytea,
    credentials_hint  jsonb NOT NULL DEFAULT '{}'
                      CHECK (jsonb_typeof(credentials_hint) = 'object'),
    status            text NOT NULL DEFAULT 'active'
                      CHECK (status IN ('active', 'disabled')),
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT channel_connections_account_key UNIQUE (channel, account_id)
);

CREATE INDEX channel_connections_tenant_idx
    ON channel_connections (tenant_id, created_at DESC, id DESC);


-- A contact as a channel knows them: a WhatsApp wa_id, a Telegram chat
-- id, a page-scoped id, an address, a live-chat visitor.  Only phones are
-- contacts' own field, so a contact met on a channel without phones has
-- none.
ALTER TABLE contacts ALTER COLUMN phone DROP NOT NULL;

CREATE TABLE contact_identities (
    tenant_id    uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    channel      text NOT NULL,
    external_id  text NOT NULL CHECK (length(external_id) BETWEEN 1 AND 320),
    contact_id   uuid NOT NULL REFERENCES contacts (id) ON DELETE CASCADE,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, channel, external_id)
);

CREATE INDEX contact_identities_contact_idx
    ON contact_identities (contact_id);


-- Conversations: one per contact and connection.  A customer who writes
-- again after "resolved" reopens the same conversation, so an agent sees
-- the whole history in one place.
ALTER TABLE conversations
    ADD COLUMN connection_id uuid
        REFERENCES channel_connections (id) ON DELETE SET NULL,
    ADD COLUMN last_message jsonb;

CREATE UNIQUE INDEX conversations_connection_contact_key
    ON conversations (connection_id, contact_id)
    WHERE connection_id IS NOT NULL;

-- Activity is the inbox's order and its keyset: never NULL (a new
-- conversation's activity is its creation), so (last_message_at, id)
-- compares as a row.
UPDATE conversations SET last_message_at = created_at
WHERE last_message_at IS NULL;

ALTER TABLE conversations
    ALTER COLUMN last_message_at SET DEFAULT now(),
    ALTER COLUMN last_message_at SET NOT NULL;

DROP INDEX conversations_tenant_activity_idx;

CREATE INDEX conversations_tenant_activity_idx
    ON conversations (tenant_id, last_message_at DESC, id DESC);

-- the inbox's filters that the activity index does not serve well
CREATE INDEX conversations_tenant_unread_idx
    ON conversations (tenant_id, last_message_at DESC, id DESC)
    WHERE unread_count > 0;

CREATE INDEX conversations_assignee_activity_idx
    ON conversations (assignee_id, last_message_at DESC, id DESC)
    WHERE assignee_id IS NOT NULL;

DROP INDEX conversations_assignee_idx;

CREATE INDEX conversations_tags_idx ON conversations USING gin (tags);


-- Messages, partitioned by month of created_at.  A message is found by
-- (id, created_at) or through its conversation's index; a provider's id
-- leads to it through message_refs.
--   direction  inbound (from the contact) | outbound (an agent, a flow,
--              the API)
--   status     received (inbound) | queued -> sent -> delivered -> read,
--              or failed with error {code, title}; a private note is
--              'sent' the moment it is stored and never leaves the inbox
--   statuses   when each status was reached: {"sent": epoch s, ...}; the
--              provider's updates arrive in any order
CREATE TABLE messages (
    id                   uuid NOT NULL DEFAULT gen_random_uuid(),
    tenant_id            uuid NOT NULL,
    conversation_id      uuid NOT NULL,
    direction            text NOT NULL
                         CHECK (direction IN ('inbound', 'outbound')),
    type                 text NOT NULL CHECK (type IN ('text', 'image',
                         'video', 'audio', 'document', 'sticker', 'location',
                         'contacts', 'interactive', 'button', 'reaction',
                         'template', 'order', 'unsupported')),
    content              jsonb NOT NULL
                         CHECK (jsonb_typeof(content) = 'object'),
    status               text NOT NULL CHECK (status IN ('received', 'queued',
                         'sent', 'delivered', 'read', 'failed')),
    private              boolean NOT NULL DEFAULT false,
    sender_id            uuid,
    reply_to_id          uuid,
    provider_message_id  text,
    error                jsonb,
    statuses             jsonb NOT NULL DEFAULT '{}',
    created_at           timestamptz NOT NULL DEFAULT now(),
    updated_at           timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (id, created_at)
) PARTITION BY RANGE (created_at);

-- a conversation's messages, newest first (the messages list's keyset)
CREATE INDEX messages_conversation_idx
    ON messages (conversation_id, created_at DESC, id DESC);

-- A row outside every month's partition lands here rather than failing
-- the webhook; orbit_messages_partitions() keeps months ahead so it stays
-- empty.
CREATE TABLE messages_default PARTITION OF messages DEFAULT;

-- Creates the partitions of this month and the next `ahead` months.  Run
-- by the migration and by every start of the master (orbit_migrate).
CREATE FUNCTION orbit_messages_partitions(ahead integer DEFAULT 3)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    m     date := date_trunc('month', now())::date;
    name  text;
BEGIN
    FOR i IN 0 .. ahead LOOP
        name := 'messages_' || to_char(m, 'YYYY_MM');

        IF to_regclass(name) IS NULL THEN
            EXECUTE format('CREATE TABLE %I PARTITION OF messages '
                           'FOR VALUES FROM (%L) TO (%L)',
                           name, m, (m + interval '1 month')::date);
        END IF;

        m := (m + interval '1 month')::date;
    END LOOP;
END
$$;

SELECT orbit_messages_partitions();

-- Run by orbit_migrate after the migrations at every start of the master
-- (and, once the job queue runs it, daily): what time makes necessary.
CREATE FUNCTION orbit_maintenance() RETURNS void
LANGUAGE sql AS $$
    SELECT orbit_messages_partitions(3)
$$;


-- A provider's message id, once per connection: the inbound dedupe (the
-- same webhook delivered twice stores one message) and the way statuses,
-- which name only the provider's id, find their message.
CREATE TABLE message_refs (
    connection_id        uuid NOT NULL
                         REFERENCES channel_connections (id) ON DELETE CASCADE,
    provider_message_id  text NOT NULL
                         CHECK (length(provider_message_id) BETWEEN 1 AND 256),
    tenant_id            uuid NOT NULL,
    message_id           uuid NOT NULL,
    message_created_at   timestamptz NOT NULL,
    PRIMARY KEY (connection_id, provider_message_id)
);


-- Counters of the inbox, kept with the writes (rule 7).
ALTER TABLE tenant_counters
    ADD COLUMN messages_month        date,
    ADD COLUMN messages_in_month     bigint NOT NULL DEFAULT 0,
    ADD COLUMN unread_conversations  bigint NOT NULL DEFAULT 0
        CHECK (unread_conversations >= 0);


-- Background work (src/jobs): claimed with FOR UPDATE SKIP LOCKED by any
-- worker of any node; an insert wakes the workers (NOTIFY orbit_jobs at
-- commit).  A worker claims only the kinds it has a handler for, so a job
-- whose engine is not built yet (flow.trigger before the flow engine)
-- waits in the table.
--   status        queued -> running -> done | failed; a running job whose
--                 lease (locked_until) passed is claimable again
--   run_at        not before (backoff of retries, delays)
CREATE TABLE jobs (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id     uuid REFERENCES tenants (id) ON DELETE CASCADE,
    kind          text NOT NULL CHECK (length(kind) BETWEEN 1 AND 64),
    payload       jsonb NOT NULL DEFAULT '{}',
    status        text NOT NULL DEFAULT 'queued' CHECK (status IN ('queued',
                  'running', 'done', 'failed')),
    run_at        timestamptz NOT NULL DEFAULT now(),
    attempts      integer NOT NULL DEFAULT 0,
    max_attempts  integer NOT NULL DEFAULT 8 CHECK (max_attempts >= 1),
    locked_until  timestamptz,
    locked_by     text,
    last_error    text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX jobs_due_idx ON jobs (kind, run_at) WHERE status = 'queued';
CREATE INDEX jobs_lease_idx ON jobs (locked_until) WHERE status = 'running';

-- the payload names the kind, so a worker wakes only for work it has
CREATE FUNCTION jobs_notify() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('orbit_jobs', kind)
    FROM (SELECT DISTINCT kind FROM new_jobs) k;
    RETURN NULL;
END
$$;

CREATE TRIGGER jobs_notify AFTER INSERT ON jobs
    REFERENCING NEW TABLE AS new_jobs
    FOR EACH STATEMENT EXECUTE FUNCTION jobs_notify();


-- The API's shapes of a message and of a conversation, one definition for
-- the REST handlers and the pipeline's real-time events.
CREATE FUNCTION orbit_message_json(m messages) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'id', m.id, 'conversationId', m.conversation_id,
        'direction', m.direction, 'type', m.type, 'content', m.content,
        'status', m.status, 'private', m.private, 'senderId', m.sender_id,
        'replyToId', m.reply_to_id,
        'providerMessageId', m.provider_message_id, 'error', m.error,
        'statuses', m.statuses, 'createdAt', m.created_at,
        'updatedAt', m.updated_at)
$$;

CREATE FUNCTION orbit_conversation_json(c conversations, k contacts)
RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'id', c.id, 'channel', c.channel, 'connectionId', c.connection_id,
        'status', c.status, 'assigneeId', c.assignee_id, 'tags', c.tags,
        'unreadCount', c.unread_count, 'lastMessage', c.last_message,
        'lastMessageAt', c.last_message_at,
        'contact', jsonb_build_object('id', k.id, 'name', k.name,
                                      'phone', k.phone, 'email', k.email,
                                      'avatarUrl', k.avatar_url),
        'createdAt', c.created_at, 'updatedAt', c.updated_at)
$$;

-- what an inbox row shows of its newest message
CREATE FUNCTION orbit_message_preview(m messages) RETURNS jsonb
LANGUAGE sql IMMUTABLE AS $$
    SELECT jsonb_build_object(
        'id', m.id, 'direction', m.direction, 'type', m.type,
        'text', left(coalesce(m.content ->> 'text', m.content ->> 'caption',
                              m.content ->> 'emoji', ''), 200),
        'status', m.status, 'createdAt', m.created_at)
$$;


-- The rank of a status: an update applies only when it moves forward, so
-- a "delivered" that arrives after "read" changes nothing.  failed comes
-- after sent and delivered (the provider can fail a message it accepted)
-- but not after read.
CREATE FUNCTION orbit_status_rank(s text) RETURNS integer
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE s WHEN 'queued' THEN 0 WHEN 'sent' THEN 1
                  WHEN 'delivered' THEN 2 WHEN 'failed' THEN 3
                  WHEN 'read' THEN 4 ELSE -1 END
$$;


-- A delivery's outcome, the effect its job commits with (src/channels/
-- orbit_outbound.c): the provider took the message (its id, from now on
-- the way its statuses find it), or it failed for good with the
-- provider's reason.  Either only moves a message forward: a status
-- webhook may have outrun the job's commit.
CREATE FUNCTION orbit_message_sent(mid uuid, at timestamptz, pid text,
                                   conn uuid)
RETURNS void LANGUAGE sql AS $$
    WITH m AS (
        UPDATE messages SET
            status = CASE WHEN orbit_status_rank(status)
                               < orbit_status_rank('sent')
                          THEN 'sent' ELSE status END,
            provider_message_id = COALESCE(provider_message_id, pid),
            statuses = jsonb_build_object('sent',
                           extract(epoch FROM now())::bigint) || statuses,
            updated_at = now()
        WHERE id = mid AND created_at = at
        RETURNING id, tenant_id, created_at
    )
    INSERT INTO message_refs (connection_id, provider_message_id, tenant_id,
                              message_id, message_created_at)
    SELECT conn, pid, m.tenant_id, m.id, m.created_at FROM m
    WHERE pid IS NOT NULL AND conn IS NOT NULL
    ON CONFLICT DO NOTHING
$$;

CREATE FUNCTION orbit_message_failed(mid uuid, at timestamptz, err jsonb)
RETURNS void LANGUAGE sql AS $$
    UPDATE messages SET
        status = CASE WHEN orbit_status_rank(status)
                           < orbit_status_rank('failed')
                      THEN 'failed' ELSE status END,
        error = CASE WHEN orbit_status_rank(status)
                          < orbit_status_rank('failed')
                     THEN err ELSE error END,
        statuses = statuses || jsonb_build_object('failed',
                       extract(epoch FROM now())::bigint),
        updated_at = now()
    WHERE id = mid AND created_at = at
$$;


-- The inbound pipeline's one call.  items: a JSON array of what channel
-- adapters normalized (src/channels/orbit_channel.h):
--   {"kind":"message", "channel", "account", "contact":{"externalId",
--    "phone"?, "name"?}, "providerMessageId", "type", "content":{...},
--    "replyTo"?: provider id, "timestamp"?: epoch s}
--   {"kind":"status", "channel", "account", "providerMessageId",
--    "status":"sent|delivered|read|failed", "timestamp"?, "error"?}
-- Returns an array, one result per item in order:
--   {"ok":true, "tenantId", "conversationId", "event":"new_message",
--    "data":{message with "conversation"}, "duplicate":false, "audience"}
--   {"ok":true, "tenantId", "conversationId", "event":"message_status",
--    "data":{"messageId","conversationId","status","error"}, "audience"}
-- audience: who of the tenant's room hears the event: "staff" and the
-- conversation's assignee, if any (orbit_rt_broadcast)
--   {"ok":true, "duplicate":true} / {"ok":true, "stale":true}
--   {"ok":false, "reason":"unknown_account" | "unknown_message"}
CREATE FUNCTION orbit_inbound(items jsonb) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    res       jsonb;
    st        record;
    msg       messages;
    assignee  uuid;
BEGIN
    -- The messages, as sets: a batch of webhooks costs a few statements,
    -- not a few per message.  Each step reads what the steps before it
    -- RETURNED (a statement does not see its own writes).
    WITH it AS (
        SELECT t.ord, t.i, cn.id AS conn_id, cn.tenant_id, cn.channel,
               t.i ->> 'providerMessageId' AS pid,
               t.i #>> '{contact,externalId}' AS ext,
               t.i #>> '{contact,phone}' AS phone
        FROM jsonb_array_elements(items) WITH ORDINALITY AS t (i, ord)
        LEFT JOIN channel_connections cn
               ON cn.channel = t.i ->> 'channel'
              AND cn.account_id = t.i ->> 'account'
              AND cn.status = 'active'
        WHERE t.i ->> 'kind' = 'message'

    ), firsts AS (                  -- a provider id once per batch
        SELECT DISTINCT ON (conn_id, pid) it.*, gen_random_uuid() AS msg_id
        FROM it WHERE conn_id IS NOT NULL
        ORDER BY conn_id, pid, ord

    ), refs AS (                    -- and once ever: the index settles it
        INSERT INTO message_refs (connection_id, provider_message_id,
                                  tenant_id, message_id, message_created_at)
        SELECT conn_id, pid, tenant_id, msg_id, now() FROM firsts
        ON CONFLICT DO NOTHING
        RETURNING message_id

    ), fresh AS (
        SELECT f.* FROM firsts f JOIN refs r ON r.message_id = f.msg_id

    ), who AS (                     -- each customer once
        SELECT DISTINCT ON (tenant_id, channel, ext)
               tenant_id, channel, ext, phone,
               nullif(left(i #>> '{contact,name}', 200), '') AS name
        FROM fresh ORDER BY tenant_id, channel, ext, ord

    ), known AS (                   -- by this channel's id, else by phone
        SELECT w.*, ci.contact_id IS NOT NULL AS has_identity,
               COALESCE(ci.contact_id, k.id) AS contact_id,
               gen_random_uuid() AS new_id
        FROM who w
        LEFT JOIN contact_identities ci
               ON ci.tenant_id = w.tenant_id AND ci.channel = w.channel
              AND ci.external_id = w.ext
        LEFT JOIN contacts k
               ON ci.contact_id IS NULL AND w.phone IS NOT NULL
              AND k.tenant_id = w.tenant_id AND k.phone = w.phone

    ), ins_k AS (                   -- else new (or made meanwhile: by phone)
        INSERT INTO contacts AS k (id, tenant_id, phone, name)
        SELECT DISTINCT ON (tenant_id, COALESCE(phone, new_id::text))
               new_id, tenant_id, phone, name
        FROM known WHERE contact_id IS NULL
        ORDER BY tenant_id, COALESCE(phone, new_id::text)
        ON CONFLICT (tenant_id, phone) DO UPDATE SET updated_at = now()
        RETURNING k AS row, k.id, k.tenant_id, k.phone, (xmax = 0) AS created

    ), resolved AS (
        SELECT kn.tenant_id, kn.channel, kn.ext, kn.has_identity,
               COALESCE(kn.contact_id, ik.id) AS contact_id
        FROM known kn
        LEFT JOIN ins_k ik
               ON kn.contact_id IS NULL
              AND (ik.id = kn.new_id
                   OR (kn.phone IS NOT NULL AND ik.tenant_id = kn.tenant_id
                       AND ik.phone = kn.phone))

    ), ids AS (
        INSERT INTO contact_identities (tenant_id, channel, external_id,
                                        contact_id)
        SELECT tenant_id, channel, ext, contact_id FROM resolved
        WHERE NOT has_identity AND contact_id IS NOT NULL
        ON CONFLICT DO NOTHING

    ), msgs AS (
        SELECT f.*, r.contact_id,
               jsonb_build_object('id', f.msg_id, 'direction', 'inbound',
                   'type', f.i ->> 'type',
                   'text', left(coalesce(f.i #>> '{content,text}',
                                         f.i #>> '{content,caption}',
                                         f.i #>> '{content,emoji}', ''), 200),
                   'status', 'received', 'createdAt', now()) AS preview
        FROM fresh f
        JOIN resolved r ON r.tenant_id = f.tenant_id
                       AND r.channel = f.channel AND r.ext = f.ext

    ), per_conv AS (                -- a conversation's newest, and how many
        SELECT DISTINCT ON (conn_id, contact_id) conn_id, contact_id,
               tenant_id, channel, preview,
               count(*) OVER (PARTITION BY conn_id, contact_id) AS n
        FROM msgs ORDER BY conn_id, contact_id, ord DESC

    ), conv AS (                    -- upserted; resolved or pending reopen
        INSERT INTO conversations AS c (tenant_id, contact_id, channel,
            connection_id, unread_count, last_message, last_message_at)
        SELECT tenant_id, contact_id, channel, conn_id, n, preview, now()
        FROM per_conv
        ON CONFLICT (connection_id, contact_id)
            WHERE connection_id IS NOT NULL
        DO UPDATE SET
            status = CASE WHEN c.status IN ('resolved', 'pending')
                          THEN CASE WHEN c.assignee_id IS NULL
                                    THEN 'open' ELSE 'assigned' END
                          ELSE c.status END,
            unread_count = c.unread_count + excluded.unread_count,
            last_message = excluded.last_message,
            last_message_at = excluded.last_message_at,
            updated_at = now()
        RETURNING c AS row, c.id, c.tenant_id, c.connection_id, c.contact_id,
                  c.unread_count, c.assignee_id

    ), ins_m AS (
        INSERT INTO messages AS m (id, tenant_id, conversation_id, direction,
            type, content, status, reply_to_id, provider_message_id,
            statuses, created_at)
        SELECT g.msg_id, g.tenant_id, cv.id, 'inbound', g.i ->> 'type',
               g.i -> 'content', 'received',
               COALESCE(
                   (SELECT rr.message_id FROM message_refs rr
                    WHERE rr.connection_id = g.conn_id
                      AND rr.provider_message_id = g.i ->> 'replyTo'),
                   (SELECT f2.msg_id FROM fresh f2
                    WHERE f2.conn_id = g.conn_id
                      AND f2.pid = g.i ->> 'replyTo')),
               g.pid,
               CASE WHEN g.i ? 'timestamp'
                    THEN jsonb_build_object('sent', g.i -> 'timestamp')
                    ELSE '{}' END,
               now()
        FROM msgs g
        JOIN conv cv ON cv.connection_id = g.conn_id
                    AND cv.contact_id = g.contact_id
        RETURNING m

    ), kev AS (
        INSERT INTO domain_events (tenant_id, type, payload)
        SELECT ik.tenant_id, 'contact_created', jsonb_build_object(
                   'contactId', ik.id, 'phone', ik.phone,
                   'tags', '[]'::jsonb, 'source', kn.channel)
        FROM ins_k ik
        JOIN known kn ON kn.new_id = ik.id
        WHERE ik.created

    ), cnt AS (                     -- each tenant's counters once
        INSERT INTO tenant_counters AS tc (tenant_id, contacts,
            messages_month, messages_in_month, unread_conversations)
        SELECT tenant_id, sum(contacts), date_trunc('month', now())::date,
               sum(msgs), sum(unread)
        FROM (SELECT tenant_id, count(*) AS contacts, 0 AS msgs, 0 AS unread
              FROM ins_k WHERE created GROUP BY tenant_id
              UNION ALL
              SELECT cv.tenant_id, 0, sum(p.n),
                     count(*) FILTER (WHERE cv.unread_count = p.n)
              FROM conv cv
              JOIN per_conv p ON p.conn_id = cv.connection_id
                             AND p.contact_id = cv.contact_id
              GROUP BY cv.tenant_id) x
        GROUP BY tenant_id
        ON CONFLICT (tenant_id) DO UPDATE SET
            contacts = tc.contacts + excluded.contacts,
            messages_in_month = CASE
                WHEN tc.messages_month = excluded.messages_month
                THEN tc.messages_in_month + excluded.messages_in_month
                ELSE excluded.messages_in_month END,
            messages_month = excluded.messages_month,
            unread_conversations = tc.unread_conversations
                                   + excluded.unread_conversations,
            updated_at = now()

    ), trig AS (                    -- the flow engine's, in one statement
        INSERT INTO jobs (tenant_id, kind, payload)
        SELECT (im.m).tenant_id, 'flow.trigger', jsonb_build_object(
                   'event', 'message_received', 'messageId', (im.m).id,
                   'messageCreatedAt', (im.m).created_at,
                   'conversationId', (im.m).conversation_id,
                   'contactId', cv.contact_id, 'channel', f.channel,
                   'connectionId', f.conn_id)
        FROM ins_m im
        JOIN fresh f ON f.msg_id = (im.m).id
        JOIN conv cv ON cv.id = (im.m).conversation_id

    ), kall AS (                    -- the contacts as the events show them
        SELECT DISTINCT ON ((x.k).id) x.k
        FROM (SELECT ik.row AS k, 0 AS pref FROM ins_k ik
              UNION ALL
              SELECT k, 1 FROM contacts k
              WHERE k.id IN (SELECT contact_id FROM resolved)) x
        ORDER BY (x.k).id, x.pref
    )
    SELECT jsonb_object_agg(it.ord::text, CASE
               WHEN it.conn_id IS NULL
               THEN jsonb_build_object('ok', false,
                                       'reason', 'unknown_account')
               WHEN im.m IS NULL
               THEN jsonb_build_object('ok', true, 'duplicate', true)
               ELSE jsonb_build_object(
                   'ok', true, 'duplicate', false,
                   'tenantId', it.tenant_id,
                   'conversationId', cv.id,
                   'audience', trim('staff '
                                    || coalesce(cv.assignee_id::text, '')),
                   'event', 'new_message',
                   'data', orbit_message_json(im.m)
                           || jsonb_build_object('conversation',
                                  orbit_conversation_json(cv.row, ka.k)))
               END)
    INTO res
    FROM it
    LEFT JOIN firsts f ON f.ord = it.ord
    LEFT JOIN ins_m im ON (im.m).id = f.msg_id
    LEFT JOIN conv cv ON cv.id = (im.m).conversation_id
    LEFT JOIN kall ka ON (ka.k).id = cv.contact_id;

    res := COALESCE(res, '{}');

    -- The statuses, in their order: several of one message (sent,
    -- delivered, read in one webhook) each move it forward or not.
    FOR st IN
        SELECT t.ord, t.i, cn.id AS conn_id, cn.tenant_id,
               r.message_id IS NULL AS by_our_id,
               COALESCE(r.message_id, o.id) AS message_id,
               COALESCE(r.message_created_at, o.created_at)
                   AS message_created_at
        FROM jsonb_array_elements(items) WITH ORDINALITY AS t (i, ord)
        LEFT JOIN channel_connections cn
               ON cn.channel = t.i ->> 'channel'
              AND cn.account_id = t.i ->> 'account'
              AND cn.status = 'active'
        LEFT JOIN message_refs r
               ON r.connection_id = cn.id
              AND r.provider_message_id = t.i ->> 'providerMessageId'
        -- the provider echoed our id: its send may not be committed yet
        LEFT JOIN messages o
               ON r.message_id IS NULL
              AND o.id = (t.i ->> 'messageId')::uuid
              AND o.tenant_id = cn.tenant_id
              AND o.direction = 'outbound'
        WHERE t.i ->> 'kind' = 'status'
        ORDER BY t.ord
    LOOP
        IF st.conn_id IS NULL OR st.message_id IS NULL THEN
            res := res || jsonb_build_object(st.ord::text,
                jsonb_build_object('ok', false, 'reason',
                    CASE WHEN st.conn_id IS NULL THEN 'unknown_account'
                         ELSE 'unknown_message' END));
            CONTINUE;
        END IF;

        -- found by our id: the provider's is learnt here, for the
        -- statuses that follow
        IF st.by_our_id THEN
            INSERT INTO message_refs (connection_id, provider_message_id,
                                      tenant_id, message_id,
                                      message_created_at)
            VALUES (st.conn_id, st.i ->> 'providerMessageId', st.tenant_id,
                    st.message_id, st.message_created_at)
            ON CONFLICT DO NOTHING;
        END IF;

        UPDATE messages SET
            provider_message_id = COALESCE(provider_message_id,
                                           st.i ->> 'providerMessageId'),
            status = CASE WHEN orbit_status_rank(st.i ->> 'status')
                               > orbit_status_rank(status)
                          THEN st.i ->> 'status' ELSE status END,
            error = CASE WHEN st.i ->> 'status' = 'failed'
                              AND orbit_status_rank(status)
                                  < orbit_status_rank('failed')
                         THEN st.i -> 'error' ELSE error END,
            statuses = statuses || jsonb_build_object(st.i ->> 'status',
                COALESCE((st.i ->> 'timestamp')::bigint,
                         extract(epoch FROM now())::bigint)),
            updated_at = now()
        WHERE id = st.message_id AND created_at = st.message_created_at
        RETURNING * INTO msg;

        SELECT assignee_id INTO assignee FROM conversations
        WHERE id = msg.conversation_id;

        res := res || jsonb_build_object(st.ord::text, jsonb_build_object(
            'ok', true, 'tenantId', st.tenant_id,
            'conversationId', msg.conversation_id,
            'audience', trim('staff ' || coalesce(assignee::text, '')),
            'event', 'message_status',
            'data', jsonb_build_object('messageId', msg.id,
                'conversationId', msg.conversation_id,
                'status', msg.status, 'error', msg.error,
                'statuses', msg.statuses)));
    END LOOP;

    RETURN (SELECT COALESCE(jsonb_agg(res -> n::text ORDER BY n), '[]')
            FROM generate_series(1, jsonb_array_length(items)) n);
END
$$;
