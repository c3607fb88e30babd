-- OrbitDesk 015: time-ordered ids for the rows the inbox writes most.
--
-- A random (v4) UUID puts each new row's primary-key entry on a random
-- b-tree page; after every checkpoint the first change of a page writes
-- its whole image to the WAL, so under load each message cost a full
-- 8 kB page or two in WAL (measured with pg_walinspect: the messages and
-- contacts primary keys were most of the inbound pipeline's WAL).  An id
-- that starts with the time (the layout of UUID version 7: 48 bits of
-- milliseconds, then random bits; 74 of them, so ids stay unguessable)
-- puts new entries on the rightmost page, which stays hot.

CREATE FUNCTION orbit_uuid7() RETURNS uuid
LANGUAGE sql VOLATILE AS $$
    SELECT encode(
        set_bit(set_bit(
            overlay(uuid_send(gen_random_uuid())
                    PLACING substring(int8send(floor(extract(epoch FROM
                        clock_timestamp()) * 1000)::bigint) FROM 3)
                    FROM 1 FOR 6),
            52, 1), 53, 1),
        'hex')::uuid
$$;

ALTER TABLE messages ALTER COLUMN id SET DEFAULT orbit_uuid7();
ALTER TABLE contacts ALTER COLUMN id SET DEFAULT orbit_uuid7();
ALTER TABLE conversations ALTER COLUMN id SET DEFAULT orbit_uuid7();

-- orbit_inbound() (006) makes its new messages' and contacts' ids itself:
-- the same function, with time-ordered ones.
DO $$
DECLARE
    def  text;
BEGIN
    def := pg_get_functiondef('orbit_inbound_by_id(jsonb)'::regprocedure);

    IF position('gen_random_uuid()' IN def) = 0 THEN
        RAISE EXCEPTION 'orbit_inbound_by_id() makes no ids any more';
    END IF;

    EXECUTE replace(def, 'gen_random_uuid()', 'orbit_uuid7()');
END
$$;
