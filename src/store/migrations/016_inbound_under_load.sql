-- OrbitDesk 016: the inbound pipeline under load.
--
-- Measured with `ORBIT_BENCH_ONLY=inbound tools/orbit bench` (16
-- connections, one nginx worker): the pipeline's statements waited for
-- each other more than they worked.  Every one of them
--   - updated the tenant's one counters row, whose lock it held until its
--     commit was flushed: the next one waited for that flush;
--   - inserted jobs, whose trigger's NOTIFY takes, at commit, a lock that
--     serializes the commits of every notifying transaction of the
--     cluster (PostgreSQL's async.c) until the commit is flushed.
-- So a second statement in flight bought nothing, and a third less.
--
-- 1. A tenant's counters are shards: rows (tenant_id, shard), each
--    transaction adding to the shard of its backend (orbit_counter_shard),
--    a figure being the sum of its tenant's rows.  A shard may go below
--    zero (a contact counted on one shard, deleted on another); the sums
--    do not.
-- 2. A transaction that wakes its own worker once committed (the pipeline:
--    its results name the kinds of jobs it enqueued, src/channels/
--    orbit_pipeline.c) sets orbit.jobs_notify to off, and its jobs are
--    inserted without NOTIFY.  Another worker finds them at its next poll
--    if ours cannot take them.
-- 3. orbit_inbound() is one function again (the wrappers of 010 and 014
--    each scanned the items and re-ran the one before): the messages in
--    one statement, then each status (by id or by watermark) by a function
--    of its own, then the statuses that outran their send, under their
--    lock, in one order.  It enqueues media.fetch itself (the trigger of
--    009 goes) so that its results can say so.


-- 1. counters in shards

ALTER TABLE tenant_counters
    DROP CONSTRAINT tenant_counters_pkey,
    DROP CONSTRAINT tenant_counters_contacts_check,
    DROP CONSTRAINT tenant_counters_unread_conversations_check,
    ADD COLUMN shard smallint NOT NULL DEFAULT 0,
    ADD PRIMARY KEY (tenant_id, shard);

-- the shard a transaction adds to: its backend's, so that two statements
-- in flight at once seldom share one
CREATE FUNCTION orbit_counter_shard() RETURNS smallint
LANGUAGE sql STABLE AS $$
    SELECT (pg_backend_pid() % 16)::smallint
$$;


-- 2. jobs that their inserter wakes

CREATE OR REPLACE FUNCTION jobs_notify() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF current_setting('orbit.jobs_notify', true) = 'off' THEN
        RETURN NULL;
    END IF;

    PERFORM pg_notify('orbit_jobs', kind)
    FROM (SELECT DISTINCT kind FROM new_jobs) k;
    RETURN NULL;
END
$$;


-- 3. orbit_inbound(), one function

DROP TRIGGER messages_media_fetch ON messages;
DROP FUNCTION messages_media_fetch();


-- A status item naming its message (by the provider's id, or by ours
-- echoed in "messageId") on connection conn of tenant: the message moved
-- forward, and its message_status result; NULL when no such message is
-- ours (yet).
CREATE FUNCTION orbit_inbound_status(i jsonb, conn uuid, tenant uuid)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    found     record;
    msg       messages;
    assignee  uuid;
BEGIN
    SELECT r.message_id IS NULL AS by_our_id,
           COALESCE(r.message_id, o.id) AS id,
           COALESCE(r.message_created_at, o.created_at) AS created_at
    INTO found
    FROM (SELECT) x
    LEFT JOIN message_refs r
           ON r.connection_id = conn
          AND r.provider_message_id = i ->> 'providerMessageId'
    -- the provider echoed our id: its send may not be committed yet
    LEFT JOIN messages o
           ON r.message_id IS NULL
          AND o.id = (i ->> 'messageId')::uuid
          AND o.tenant_id = tenant
          AND o.direction = 'outbound';

    IF found.id IS NULL THEN
        RETURN NULL;
    END IF;

    -- found by our id: the provider's is learnt here, for the statuses
    -- that follow
    IF found.by_our_id AND i ->> 'providerMessageId' IS NOT NULL THEN
        INSERT INTO message_refs (connection_id, provider_message_id,
                                  tenant_id, message_id, message_created_at)
        VALUES (conn, i ->> 'providerMessageId', tenant, found.id,
                found.created_at)
        ON CONFLICT DO NOTHING;
    END IF;

    UPDATE messages SET
        provider_message_id = COALESCE(provider_message_id,
                                       i ->> 'providerMessageId'),
        status = CASE WHEN orbit_status_rank(i ->> 'status')
                           > orbit_status_rank(status)
                      THEN i ->> 'status' ELSE status END,
        error = CASE WHEN i ->> 'status' = 'failed'
                          AND orbit_status_rank(status)
                              < orbit_status_rank('failed')
                     THEN i -> 'error' ELSE error END,
        statuses = statuses || jsonb_build_object(i ->> 'status',
            COALESCE((i ->> 'timestamp')::bigint,
                     extract(epoch FROM now())::bigint)),
        updated_at = now()
    WHERE id = found.id AND created_at = found.created_at
    RETURNING * INTO msg;

    SELECT assignee_id INTO assignee FROM conversations
    WHERE id = msg.conversation_id;

    RETURN jsonb_build_object(
        'ok', true, 'tenantId', tenant,
        'conversationId', msg.conversation_id,
        'audience', trim('staff ' || coalesce(assignee::text, '')),
        'event', 'message_status',
        'data', jsonb_build_object('messageId', msg.id,
            'conversationId', msg.conversation_id,
            'status', msg.status, 'error', msg.error,
            'statuses', msg.statuses));
END
$$;


-- A watermark (010): every outbound message of the contact's conversation
-- on conn that the provider took, created at or before it, moved forward;
-- one message_status event per message moved, "stale" when none was left,
-- unknown_message when there is no such conversation.
CREATE FUNCTION orbit_inbound_watermark(i jsonb, conn uuid, tenant uuid)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    conv  record;
    ev    jsonb;
BEGIN
    SELECT cv.id, cv.assignee_id INTO conv
    FROM contact_identities ci
    JOIN conversations cv
      ON cv.connection_id = conn AND cv.contact_id = ci.contact_id
    WHERE ci.tenant_id = tenant AND ci.channel = i ->> 'channel'
      AND ci.external_id = i #>> '{contact,externalId}';

    IF conv.id IS NULL THEN
        RETURN '{"ok": false, "reason": "unknown_message"}';
    END IF;

    WITH u AS (
        UPDATE messages m SET
            status = i ->> 'status',
            statuses = m.statuses || jsonb_build_object(i ->> 'status',
                COALESCE((i ->> 'timestamp')::bigint,
                         extract(epoch FROM now())::bigint)),
            updated_at = now()
        WHERE m.conversation_id = conv.id
          AND m.direction = 'outbound' AND NOT m.private
          AND m.status IN ('sent', 'delivered')
          AND orbit_status_rank(m.status) < orbit_status_rank(i ->> 'status')
          AND m.created_at
              <= to_timestamp((i ->> 'watermark')::numeric / 1000)
        RETURNING m.id, m.conversation_id, m.status, m.error, m.statuses,
                  m.created_at
    )
    SELECT jsonb_agg(jsonb_build_object('messageId', u.id,
               'conversationId', u.conversation_id, 'status', u.status,
               'error', u.error, 'statuses', u.statuses)
               ORDER BY u.created_at, u.id)
    INTO ev FROM u;

    IF ev IS NULL THEN
        RETURN '{"ok": true, "stale": true}';
    END IF;

    RETURN jsonb_build_object(
        'ok', true, 'tenantId', tenant, 'conversationId', conv.id,
        'audience', trim('staff ' || coalesce(conv.assignee_id::text, '')),
        'event', 'message_status', 'data', ev);
END
$$;


-- The inbound pipeline's one call, as 006 describes it (items in, one
-- result per item out), with watermarks (010) and statuses that outrun
-- their send (014).  A new message's result also names the kinds of the
-- jobs enqueued with it ("jobs"): the caller wakes them once committed.
DROP FUNCTION orbit_inbound(jsonb);
DROP FUNCTION orbit_inbound_watermarks(jsonb);
DROP FUNCTION orbit_inbound_by_id(jsonb);

CREATE FUNCTION orbit_inbound(items jsonb) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    res    jsonb;
    one    jsonb;
    early  jsonb := '[]';
    st     record;
BEGIN
    PERFORM set_config('orbit.jobs_notify', 'off', true);

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

    ), firsts AS (                  -- a provider id once per batch
        SELECT DISTINCT ON (conn_id, pid) it.*, orbit_uuid7() AS msg_id
        FROM it WHERE conn_id IS NOT NULL AND i ->> 'kind' = 'message'
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
               COALESCE(ci.contact_id,
                        (SELECT k.id FROM contacts k
                         WHERE w.phone IS NOT NULL
                           AND k.tenant_id = w.tenant_id
                           AND k.phone = w.phone)) AS contact_id,
               orbit_uuid7() AS new_id
        FROM who w
        LEFT JOIN contact_identities ci
               ON ci.tenant_id = w.tenant_id AND ci.channel = w.channel
              AND ci.external_id = w.ext

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
               -- looked up for replies only: a plan made while
               -- message_refs was empty scans it whole (until the next
               -- ANALYZE), which every message paid for
               CASE WHEN g.i ->> 'replyTo' IS NOT NULL THEN COALESCE(
                   (SELECT rr.message_id FROM message_refs rr
                    WHERE rr.connection_id = g.conn_id
                      AND rr.provider_message_id = g.i ->> 'replyTo'),
                   (SELECT f2.msg_id FROM fresh f2
                    WHERE f2.conn_id = g.conn_id
                      AND f2.pid = g.i ->> 'replyTo')) END,
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
        INSERT INTO tenant_counters AS tc (tenant_id, shard, contacts,
            messages_month, messages_in_month, unread_conversations)
        SELECT tenant_id, orbit_counter_shard(), sum(contacts),
               date_trunc('month', now())::date, sum(msgs), sum(unread)
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
        ON CONFLICT (tenant_id, shard) DO UPDATE SET
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

    ), fetches AS (                 -- media the provider keeps, copied
        INSERT INTO jobs (tenant_id, kind, payload)
        SELECT (im.m).tenant_id, 'media.fetch', jsonb_build_object(
                   'messageId', (im.m).id,
                   'messageCreatedAt', (im.m).created_at,
                   'conversationId', (im.m).conversation_id)
        FROM ins_m im
        WHERE (im.m).content -> 'media' ? 'provider'
        RETURNING (payload ->> 'messageId')::uuid AS message_id

    ), kall AS (                    -- the contacts as the events show them
        SELECT DISTINCT ON ((x.k).id) x.k
        FROM (SELECT ik.row AS k, 0 AS pref FROM ins_k ik
              UNION ALL
              SELECT k, 1 FROM contacts k
              WHERE k.id IN (SELECT contact_id FROM resolved)) x
        ORDER BY (x.k).id, x.pref
    )
    SELECT jsonb_agg(CASE
               WHEN it.i ->> 'kind' IS DISTINCT FROM 'message'
               THEN NULL                -- a status: below
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
                                  orbit_conversation_json(cv.row, ka.k)),
                   'jobs', CASE WHEN fx.message_id IS NULL
                                THEN '["flow.trigger"]'::jsonb
                                ELSE '["flow.trigger", "media.fetch"]'
                           END)
               END ORDER BY it.ord)
    INTO res
    FROM it
    LEFT JOIN firsts f ON f.ord = it.ord
    LEFT JOIN ins_m im ON (im.m).id = f.msg_id
    LEFT JOIN fetches fx ON fx.message_id = (im.m).id
    LEFT JOIN conv cv ON cv.id = (im.m).conversation_id
    LEFT JOIN kall ka ON (ka.k).id = cv.contact_id;

    res := COALESCE(res, '[]');

    -- The statuses, in their order: several of one message (sent,
    -- delivered, read in one webhook) each move it forward or not.
    FOR st IN
        SELECT t.ord, t.i, cn.id AS conn_id, cn.tenant_id
        FROM jsonb_array_elements(items) WITH ORDINALITY AS t (i, ord)
        LEFT JOIN channel_connections cn
               ON cn.channel = t.i ->> 'channel'
              AND cn.account_id = t.i ->> 'account'
              AND cn.status = 'active'
        WHERE t.i ->> 'kind' = 'status'
        ORDER BY t.ord
    LOOP
        IF st.conn_id IS NULL THEN
            one := '{"ok": false, "reason": "unknown_account"}';

        ELSIF st.i ? 'watermark' THEN
            one := orbit_inbound_watermark(st.i, st.conn_id, st.tenant_id);

        ELSE
            one := orbit_inbound_status(st.i, st.conn_id, st.tenant_id);

            IF one IS NULL THEN
                IF st.i ->> 'providerMessageId' IS NOT NULL THEN
                    early := early || jsonb_build_object('ord', st.ord,
                        'i', st.i, 'conn', st.conn_id,
                        'tenant', st.tenant_id);
                END IF;

                one := '{"ok": false, "reason": "unknown_message"}';
            END IF;
        END IF;

        res := jsonb_set(res, ARRAY[(st.ord - 1)::text], one);
    END LOOP;

    -- Statuses of messages not known yet, each under a lock of its
    -- (connection, provider id) that the send's commit takes too
    -- (orbit_message_sent, 014), taken in one order: looked up again, so
    -- a send that committed meanwhile is found, and kept otherwise, so
    -- that the send that commits next applies it.  Their results say
    -- unknown_message while kept.
    FOR st IN
        SELECT e FROM jsonb_array_elements(early) e
        ORDER BY e ->> 'conn', e #>> '{i,providerMessageId}'
    LOOP
        PERFORM pg_advisory_xact_lock(hashtextextended(
            (st.e ->> 'conn') || '/' || (st.e #>> '{i,providerMessageId}'),
            0));

        one := orbit_inbound_status(st.e -> 'i', (st.e ->> 'conn')::uuid,
                                    (st.e ->> 'tenant')::uuid);

        IF one IS NULL THEN
            INSERT INTO early_statuses (connection_id, provider_message_id,
                                        status, at, error)
            VALUES ((st.e ->> 'conn')::uuid,
                    st.e #>> '{i,providerMessageId}',
                    st.e #>> '{i,status}',
                    (st.e #>> '{i,timestamp}')::bigint,
                    st.e #> '{i,error}');
        ELSE
            res := jsonb_set(res, ARRAY[((st.e ->> 'ord')::int - 1)::text],
                             one);
        END IF;
    END LOOP;

    RETURN res;
END
$$;
