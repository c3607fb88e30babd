-- OrbitDesk 008: a connection's setup with its provider, and the polling
-- of channels that fetch their messages.
--
-- A connection created or changed (credentials, config, status, account)
-- gets a channel.setup job in the same transaction (the trigger below):
-- the channel's adapter registers us with the provider (Telegram's
-- setWebhook) and the outcome lands in "setup", which the API shows.
-- Channels that fetch their messages (IMAP) get one channel.poll job per
-- connection when set up.

ALTER TABLE channel_connections
    ADD COLUMN setup jsonb NOT NULL DEFAULT '{"status": "pending"}'
        CHECK (jsonb_typeof(setup) = 'object');

-- one poll job waits or runs per connection
CREATE UNIQUE INDEX jobs_channel_poll_key ON jobs ((payload->>'connectionId'))
    WHERE kind = 'channel.poll' AND status IN ('queued', 'running');


CREATE FUNCTION channel_connections_setup() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.setup := '{"status": "pending"}';

    INSERT INTO jobs (tenant_id, kind, payload)
    VALUES (NEW.tenant_id, 'channel.setup',
            jsonb_build_object('connectionId', NEW.id));

    RETURN NEW;
END
$$;

CREATE TRIGGER channel_connections_setup_new
    BEFORE INSERT ON channel_connections
    FOR EACH ROW EXECUTE FUNCTION channel_connections_setup();

CREATE TRIGGER channel_connections_setup_changed
    BEFORE UPDATE OF credentials, config, status, account_id
    ON channel_connections
    FOR EACH ROW
    WHEN (OLD.credentials IS DISTINCT FROM NEW.credentials
          OR OLD.config IS DISTINCT FROM NEW.config
          OR OLD.status IS DISTINCT FROM NEW.status
          OR OLD.account_id IS DISTINCT FROM NEW.account_id)
    EXECUTE FUNCTION channel_connections_setup();


-- The outcome of a channel.setup job (src/channels/orbit_outbound.c),
-- committed with it: ok or failed with the provider's reason; a polled
-- channel's active connection gets its poll job once it is ok.
CREATE FUNCTION orbit_channel_setup_done(conn uuid, ok boolean, error jsonb,
    polled boolean) RETURNS void
LANGUAGE sql AS $$
    UPDATE channel_connections
    SET setup = jsonb_strip_nulls(jsonb_build_object(
            'status', CASE WHEN ok THEN 'ok' ELSE 'failed' END,
            'error', CASE WHEN ok THEN NULL ELSE error END,
            'at', now()))
    WHERE id = conn;

    INSERT INTO jobs (tenant_id, kind, payload)
    SELECT c.tenant_id, 'channel.poll', jsonb_build_object('connectionId', c.id)
    FROM channel_connections c
    WHERE c.id = conn AND ok AND polled AND c.status = 'active'
    ON CONFLICT ((payload->>'connectionId'))
        WHERE kind = 'channel.poll' AND status IN ('queued', 'running')
        DO NOTHING;
$$;
