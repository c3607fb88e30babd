-- OrbitDesk 013: the Email channel's IMAP polling (src/channels/
-- orbit_email.c): where each mailbox's poll got to, and the one call that
-- stores a poll's mail with it.


-- A mailbox's cursor: the UIDs up to last_uid under uidvalidity are in
-- (or were passed over).  The cursor, not the mailbox, decides what is
-- new: a mail whose conversation was deleted is not imported again.
CREATE TABLE email_cursors (
    connection_id  uuid PRIMARY KEY
                   REFERENCES channel_connections (id) ON DELETE CASCADE,
    tenant_id      uuid NOT NULL,
    uidvalidity    bigint NOT NULL,
    last_uid       bigint NOT NULL,
    updated_at     timestamptz NOT NULL DEFAULT now()
);


-- A poll's mail (orbit_inbound()'s items) and its cursor, in one
-- statement: a crash stores both or neither, and a poll run twice moves
-- the cursor forward only.  A UIDVALIDITY other than the cursor's starts
-- it again (the Message-ID still dedupes).
--
-- Threads: a mail whose In-Reply-To or References names a message of this
-- connection joins that message's conversation, so it is stored under
-- that conversation's contact (content.from keeps who wrote it).  New
-- contacts met by mail get the address as their email.
CREATE FUNCTION orbit_email_inbound(items jsonb, conn uuid, validity bigint,
    last_uid bigint) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    res       jsonb;
    threaded  jsonb;
    tenant    uuid;
BEGIN
    SELECT tenant_id INTO tenant FROM channel_connections WHERE id = conn;

    IF tenant IS NULL THEN
        RETURN orbit_inbound(items);        -- unknown_account, each
    END IF;

    INSERT INTO email_cursors AS ec (connection_id, tenant_id, uidvalidity,
                                     last_uid)
    VALUES (conn, tenant, validity, last_uid)
    ON CONFLICT (connection_id) DO UPDATE SET
        last_uid = CASE WHEN ec.uidvalidity = excluded.uidvalidity
                        THEN greatest(ec.last_uid, excluded.last_uid)
                        ELSE excluded.last_uid END,
        uidvalidity = excluded.uidvalidity,
        updated_at = now();

    SELECT jsonb_agg(CASE WHEN t.ext IS NULL THEN t.i
                          ELSE jsonb_set(t.i, '{contact}',
                                         jsonb_build_object('externalId',
                                                            t.ext))
                     END ORDER BY t.ord)
    INTO threaded
    FROM (SELECT x.i, x.ord,
                 (SELECT ci.external_id
                  FROM message_refs r
                  JOIN messages m ON m.id = r.message_id
                                 AND m.created_at = r.message_created_at
                  JOIN conversations c ON c.id = m.conversation_id
                  JOIN contact_identities ci
                       ON ci.contact_id = c.contact_id
                      AND ci.tenant_id = c.tenant_id
                      AND ci.channel = 'email'
                  WHERE r.connection_id = conn
                    AND r.provider_message_id IN (
                        SELECT x.i #>> '{content,inReplyTo}'
                        UNION ALL
                        SELECT regexp_split_to_table(
                                   x.i #>> '{content,references}', ' '))
                  ORDER BY m.created_at DESC, ci.created_at
                  LIMIT 1) AS ext
          FROM jsonb_array_elements(items) WITH ORDINALITY AS x (i, ord)) t;

    res := orbit_inbound(COALESCE(threaded, '[]'));

    UPDATE contacts k SET email = ci.external_id, updated_at = now()
    FROM contact_identities ci
    WHERE ci.tenant_id = tenant AND ci.channel = 'email'
      AND ci.external_id IN (SELECT x.i #>> '{contact,externalId}'
                             FROM jsonb_array_elements(threaded) x (i))
      AND k.id = ci.contact_id AND k.email IS NULL
      AND length(ci.external_id) <= 254;

    RETURN res;
END
$$;
