-- OrbitDesk 009: media files.  An agent's upload (POST /api/v1/media) and
-- an inbound message's media fetched from its provider are both a row
-- here, their bytes in the configured storage (orbit_media: a local
-- folder or an S3 bucket) under "key".

CREATE TABLE media (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id   uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    storage     text NOT NULL CHECK (storage IN ('local', 's3')),
    key         text NOT NULL CHECK (length(key) BETWEEN 1 AND 512),
    mime_type   text NOT NULL CHECK (length(mime_type) BETWEEN 1 AND 255),
    size        bigint NOT NULL CHECK (size >= 0),
    sha256      text NOT NULL CHECK (length(sha256) = 64),
    filename    text CHECK (length(filename) BETWEEN 1 AND 255),
    source      text NOT NULL CHECK (source IN ('upload', 'inbound')),
    created_by  uuid,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX media_tenant_idx ON media (tenant_id, created_at DESC, id DESC);

CREATE FUNCTION orbit_media_json(m media) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'id', m.id, 'url', '/api/v1/media/' || m.id, 'mimeType', m.mime_type,
        'size', m.size, 'sha256', m.sha256, 'filename', m.filename,
        'source', m.source, 'createdAt', m.created_at)
$$;


-- An inbound message whose media the provider keeps (content.media has
-- "provider": WhatsApp's media id, Telegram's file_id) gets a media.fetch
-- job in the transaction that stores it.
CREATE FUNCTION messages_media_fetch() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO jobs (tenant_id, kind, payload)
    VALUES (NEW.tenant_id, 'media.fetch',
            jsonb_build_object('messageId', NEW.id,
                               'messageCreatedAt', NEW.created_at,
                               'conversationId', NEW.conversation_id));
    RETURN NULL;
END
$$;

CREATE TRIGGER messages_media_fetch AFTER INSERT ON messages
    FOR EACH ROW
    WHEN (NEW.direction = 'inbound' AND NEW.content->'media' ? 'provider')
    EXECUTE FUNCTION messages_media_fetch();


-- A fetched media stored: its row, and the message's content.media
-- pointing at it (the provider's keys stay).  Returns the media's JSON.
CREATE FUNCTION orbit_media_fetched(tenant uuid, mid uuid, msg uuid,
    msg_at timestamptz, st text, k text, mime text, sz bigint, sha text,
    fname text) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    m  media;
BEGIN
    INSERT INTO media (id, tenant_id, storage, key, mime_type, size, sha256,
                       filename, source)
    VALUES (mid, tenant, st, k, mime, sz, sha, fname, 'inbound')
    ON CONFLICT (id) DO NOTHING
    RETURNING * INTO m;

    IF m.id IS NULL THEN
        SELECT * INTO m FROM media WHERE id = mid;
    END IF;

    UPDATE messages
    SET content = jsonb_set(content, '{media}',
                      (content->'media')
                      || jsonb_build_object('mediaId', m.id,
                             'url', '/api/v1/media/' || m.id,
                             'mimeType', m.mime_type, 'size', m.size)),
        updated_at = now()
    WHERE id = msg AND created_at = msg_at AND tenant_id = tenant;

    RETURN orbit_media_json(m);
END
$$;
