-- OrbitDesk 010: Messenger and Instagram (src/channels/orbit_meta.c) — the
-- watermark statuses of orbit_inbound().
--
-- Messenger's read receipts (and its deliveries without mids) name no
-- message: "everything sent to this contact before the watermark was
-- read".  Such an item (src/channels/orbit_channel.h):
--   {"kind":"status", "channel", "account", "contact":{"externalId"},
--    "watermark": epoch ms, "status":"delivered|read", "timestamp"?}
-- moves every outbound message of the contact's conversation on that
-- account that the provider took (sent; or delivered, for read), created
-- at or before the watermark.  Its result is one message_status event per
-- message moved:
--   {"ok":true, "tenantId", "conversationId", "event":"message_status",
--    "data":[{"messageId","conversationId","status","error","statuses"}...],
--    "audience"}
--   {"ok":true, "stale":true}  nothing was left to move
--   {"ok":false, "reason":"unknown_account" | "unknown_message"}  (no
--    such connection; no conversation with that contact)
-- Every other item is orbit_inbound()'s of before (006, and whatever
-- replaced it since), now orbit_inbound_by_id().


-- The messages a watermark may still move: few per conversation (the
-- provider took them and they are not read yet), so a read receipt never
-- walks a conversation's history.
CREATE INDEX messages_unread_outbound_idx
    ON messages (conversation_id, created_at)
    WHERE direction = 'outbound' AND NOT private
      AND status IN ('sent', 'delivered');


ALTER FUNCTION orbit_inbound(jsonb) RENAME TO orbit_inbound_by_id;

CREATE FUNCTION orbit_inbound(items jsonb) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    res  jsonb;
    st   record;
    ev   jsonb;
BEGIN
    -- the watermarks are unknown messages there: their results are ours
    res := orbit_inbound_by_id(items);

    FOR st IN
        SELECT t.ord, t.i, cn.id AS conn_id, cn.tenant_id,
               cv.id AS conv_id, cv.assignee_id
        FROM jsonb_array_elements(items) WITH ORDINALITY AS t (i, ord)
        LEFT JOIN channel_connections cn
               ON cn.channel = t.i ->> 'channel'
              AND cn.account_id = t.i ->> 'account'
              AND cn.status = 'active'
        LEFT JOIN contact_identities ci
               ON ci.tenant_id = cn.tenant_id AND ci.channel = cn.channel
              AND ci.external_id = t.i #>> '{contact,externalId}'
        LEFT JOIN conversations cv
               ON cv.connection_id = cn.id AND cv.contact_id = ci.contact_id
        WHERE t.i ->> 'kind' = 'status' AND t.i ? 'watermark'
        ORDER BY t.ord
    LOOP
        IF st.conn_id IS NULL OR st.conv_id IS NULL THEN
            res := jsonb_set(res, ARRAY[(st.ord - 1)::text],
                jsonb_build_object('ok', false, 'reason',
                    CASE WHEN st.conn_id IS NULL THEN 'unknown_account'
                         ELSE 'unknown_message' END));
            CONTINUE;
        END IF;

        WITH u AS (
            UPDATE messages m SET
                status = st.i ->> 'status',
                statuses = m.statuses || jsonb_build_object(
                    st.i ->> 'status',
                    COALESCE((st.i ->> 'timestamp')::bigint,
                             extract(epoch FROM now())::bigint)),
                updated_at = now()
            WHERE m.conversation_id = st.conv_id
              AND m.direction = 'outbound' AND NOT m.private
              AND m.status IN ('sent', 'delivered')
              AND orbit_status_rank(m.status)
                  < orbit_status_rank(st.i ->> 'status')
              AND m.created_at
                  <= to_timestamp((st.i ->> 'watermark')::numeric / 1000)
            RETURNING m.id, m.conversation_id, m.status, m.error,
                      m.statuses, m.created_at
        )
        SELECT jsonb_agg(jsonb_build_object('messageId', u.id,
                   'conversationId', u.conversation_id,
                   'status', u.status, 'error', u.error,
                   'statuses', u.statuses) ORDER BY u.created_at, u.id)
        INTO ev FROM u;

        res := jsonb_set(res, ARRAY[(st.ord - 1)::text], CASE
            WHEN ev IS NULL THEN jsonb_build_object('ok', true, 'stale', true)
            ELSE jsonb_build_object(
                'ok', true, 'tenantId', st.tenant_id,
                'conversationId', st.conv_id,
                'audience', trim('staff '
                                 || coalesce(st.assignee_id::text, '')),
                'event', 'message_status', 'data', ev)
            END);
    END LOOP;

    RETURN res;
END
$$;
