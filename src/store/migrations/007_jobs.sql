-- OrbitDesk 007: what the job queue (src/jobs) adds to 006's jobs table:
-- the guard of a job's outcome, the periodic maintenance job and its
-- purge of finished jobs.


-- A job's outcome is one statement (src/jobs/orbit_jobs_run.c):
--   WITH job AS (UPDATE jobs ... WHERE id = .. AND locked_by = ..
--                AND attempts = .. AND status = 'running' RETURNING ...),
--        effect AS (<the handler's own change>)
--   SELECT orbit_job_owned(count(*)) FROM job
-- When the claim was lost (its lease ran out and another worker took the
-- job) the update matches nothing and this raises, so the statement rolls
-- back, the handler's effect with it.
CREATE FUNCTION orbit_job_owned(n bigint) RETURNS bigint
LANGUAGE plpgsql AS $$
BEGIN
    IF n = 0 THEN
        RAISE EXCEPTION 'job claim lost' USING ERRCODE = 'OJ001';
    END IF;

    RETURN n;
END
$$;


-- One maintenance job waits or runs at a time: every worker enqueues it
-- at start (INSERT .. ON CONFLICT DO NOTHING), the one that runs it sets
-- its next run an hour on.
CREATE UNIQUE INDEX jobs_maintenance_key ON jobs (kind)
    WHERE kind = 'maintenance' AND status IN ('queued', 'running');

-- the purge below reads this, not the table
CREATE INDEX jobs_done_idx ON jobs (updated_at) WHERE status = 'done';

-- The maintenance job's work: orbit_maintenance() (006: partitions ahead)
-- and the done jobs older than keep, deleted.  Failed jobs stay, for
-- people to look at.  Returns how many were deleted.
CREATE FUNCTION orbit_jobs_maintenance(keep interval) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    purged  bigint;
BEGIN
    PERFORM orbit_maintenance();

    DELETE FROM jobs WHERE status = 'done' AND updated_at < now() - keep;
    GET DIAGNOSTICS purged = ROW_COUNT;

    RETURN purged;
END
$$;
