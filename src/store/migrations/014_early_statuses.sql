-- OrbitDesk 014: a status that outruns its send.
--
-- A provider may report "delivered" for a message before the job that
-- sent it has committed the provider's id (Messenger answers the send,
-- then its delivery webhook can come first; WhatsApp and Twilio echo our
-- id, Messenger does not).  Such a status is kept here, by connection and
-- provider id, and applied when the send commits (orbit_message_sent), so
-- nothing the provider told us is lost.  Statuses of messages that never
-- become ours (sent from the provider's own inbox) go after a day
-- (orbit_maintenance).

CREATE TABLE early_statuses (
    id                   bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    connection_id        uuid NOT NULL
                         REFERENCES channel_connections (id) ON DELETE CASCADE,
    provider_message_id  text NOT NULL,
    status               text NOT NULL,
    at                   bigint,
    error                jsonb,
    created_at           timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX early_statuses_ref_idx
    ON early_statuses (connection_id, provider_message_id);
CREATE INDEX early_statuses_created_idx ON early_statuses (created_at);


-- orbit_inbound() as before (010), then the statuses of messages not
-- known yet, each under a lock of its (connection, provider id) that the
-- send's commit takes too (orbit_message_sent): looked up again there, so
-- a send that committed meanwhile is found, and kept otherwise, so the
-- send that commits next applies it.  Their results say unknown_message
-- while kept.
ALTER FUNCTION orbit_inbound(jsonb) RENAME TO orbit_inbound_watermarks;

CREATE FUNCTION orbit_inbound(items jsonb) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    res    jsonb;
    again  jsonb;
    st     record;
BEGIN
    res := orbit_inbound_watermarks(items);

    FOR st IN
        SELECT t.ord, t.i, cn.id AS conn_id
        FROM jsonb_array_elements(items) WITH ORDINALITY AS t (i, ord)
        JOIN channel_connections cn
          ON cn.channel = t.i ->> 'channel'
         AND cn.account_id = t.i ->> 'account'
         AND cn.status = 'active'
        WHERE t.i ->> 'kind' = 'status'
          AND t.i ->> 'providerMessageId' IS NOT NULL
          AND res -> (t.ord::int - 1) ->> 'reason' = 'unknown_message'
        ORDER BY cn.id, t.i ->> 'providerMessageId'
    LOOP
        PERFORM pg_advisory_xact_lock(hashtextextended(
            st.conn_id::text || '/' || (st.i ->> 'providerMessageId'), 0));

        again := orbit_inbound_watermarks(jsonb_build_array(st.i)) -> 0;

        IF again ->> 'reason' = 'unknown_message' THEN
            INSERT INTO early_statuses (connection_id, provider_message_id,
                                        status, at, error)
            VALUES (st.conn_id, st.i ->> 'providerMessageId',
                    st.i ->> 'status', (st.i ->> 'timestamp')::bigint,
                    st.i -> 'error');
        ELSE
            res := jsonb_set(res, ARRAY[(st.ord - 1)::text], again);
        END IF;
    END LOOP;

    RETURN res;
END
$$;


-- A send committed: its provider id, then the statuses that came first.
-- Returns what the message is now: {status, error, statuses}.
DROP FUNCTION orbit_message_sent(uuid, timestamptz, text, uuid);

CREATE FUNCTION orbit_message_sent(mid uuid, mat timestamptz, pid text,
                                   conn uuid)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    m    messages;
    e    record;
BEGIN
    -- before any row: orbit_inbound() takes it to keep an early status
    IF pid IS NOT NULL AND conn IS NOT NULL THEN
        PERFORM pg_advisory_xact_lock(hashtextextended(
            conn::text || '/' || pid, 0));
    END IF;

    UPDATE messages SET
        status = CASE WHEN orbit_status_rank(status)
                           < orbit_status_rank('sent')
                      THEN 'sent' ELSE status END,
        provider_message_id = COALESCE(provider_message_id, pid),
        statuses = jsonb_build_object('sent',
                       extract(epoch FROM now())::bigint) || statuses,
        updated_at = now()
    WHERE id = mid AND created_at = mat
    RETURNING * INTO m;

    IF m.id IS NULL THEN
        RETURN NULL;
    END IF;

    IF pid IS NOT NULL AND conn IS NOT NULL THEN
        INSERT INTO message_refs (connection_id, provider_message_id,
                                  tenant_id, message_id, message_created_at)
        VALUES (conn, pid, m.tenant_id, m.id, m.created_at)
        ON CONFLICT DO NOTHING;

        FOR e IN
            DELETE FROM early_statuses
            WHERE connection_id = conn AND provider_message_id = pid
            RETURNING early_statuses.status, early_statuses.at,
                      early_statuses.error
        LOOP
            UPDATE messages SET
                status = CASE WHEN orbit_status_rank(e.status)
                                   > orbit_status_rank(status)
                              THEN e.status ELSE status END,
                error = CASE WHEN e.status = 'failed'
                                  AND orbit_status_rank(status)
                                      < orbit_status_rank('failed')
                             THEN e.error ELSE error END,
                statuses = statuses || jsonb_build_object(e.status,
                    COALESCE(e.at, extract(epoch FROM now())::bigint)),
                updated_at = now()
            WHERE id = m.id AND created_at = m.created_at
            RETURNING * INTO m;
        END LOOP;
    END IF;

    RETURN jsonb_build_object('status', m.status, 'error', m.error,
                              'statuses', m.statuses);
END
$$;


CREATE OR REPLACE FUNCTION orbit_maintenance() RETURNS void
LANGUAGE sql AS $$
    SELECT orbit_messages_partitions(3);
    DELETE FROM early_statuses WHERE created_at < now() - interval '1 day';
$$;
