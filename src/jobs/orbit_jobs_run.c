/*
 * OrbitDesk: one job's run, from its claim to the commit of its outcome.
 *
 * The run has two pools: its own (this state, the copies of the row, the
 * outcome's statement) and job->pool, the handler's.  Cutting a run off
 * (its time is up, or the worker's shutdown time) destroys the handler's
 * pool, which cancels whatever the handler started there, and records a
 * retry from the run's own pool.
 *
 * The outcome is one statement: the job's row updated where the claim is
 * still ours (id, locked_by, attempts), the handler's effect as a second
 * CTE, and orbit_job_owned() raising when the first matched nothing, so
 * the effect rolls back with it.  While PostgreSQL is away the statement
 * is tried again each second until the lease would end; after that the
 * job is left to run again.
 */

#include "jobs/orbit_jobs_int.h"


#define ORBIT_JOBS_OUTCOME_RETRY  1000


/* the SET of the outcome, by status; $%d: the params after id, worker,
 * attempt */

static const char  *orbit_jobs_set[] = {
    "status = 'done'",

    "status = CASE WHEN attempts >= max_attempts"
    " THEN 'failed' ELSE 'queued' END, last_error = $%d,"
    " run_at = now() + $%d::float8 * interval '1 millisecond'",

    "status = 'failed', last_error = $%d",

    "status = 'queued', attempts = 0,"
    " run_at = now() + $%d::float8 * interval '1 millisecond'"
};

static int  orbit_jobs_set_params[] = { 0, 2, 1, 1 };


static ngx_int_t orbit_jobs_run_copy(orbit_jobs_run_t *run, PGresult *res,
    int row);
static u_char *orbit_jobs_log_context(ngx_log_t *log, u_char *buf,
    size_t len);
static void orbit_jobs_json_free(void *data);
static void orbit_jobs_run_timeout(ngx_event_t *ev);
static void orbit_jobs_run_abandon(orbit_jobs_run_t *run);
static ngx_int_t orbit_jobs_outcome_query(orbit_jobs_run_t *run);
static void orbit_jobs_outcome_send(orbit_jobs_run_t *run);
static void orbit_jobs_outcome_later(orbit_jobs_run_t *run,
    ngx_str_t *why);
static void orbit_jobs_outcome_recorded(orbit_pg_query_t *q,
    PGresult *res);
static void orbit_jobs_outcome_failed(orbit_jobs_run_t *run,
    PGresult *res);
static void orbit_jobs_outcome_log(orbit_jobs_run_t *run, PGresult *res);
static ngx_uint_t orbit_jobs_transient(const char *state);
static ngx_msec_t orbit_jobs_backoff(orbit_jobs_conf_t *jc,
    ngx_uint_t attempt);
static void orbit_jobs_run_end(orbit_jobs_run_t *run);


/* row of the claim: next, id, kind, tenant_id, payload, attempts, max */

ngx_int_t
orbit_jobs_run_start(orbit_jobs_t *jobs, orbit_jobs_handler_t *h,
    PGresult *res, int row)
{
    ngx_int_t            rc;
    ngx_msec_t           cut, spent;
    ngx_pool_t          *pool;
    orbit_job_t         *job;
    orbit_jobs_run_t    *run;
    ngx_pool_cleanup_t  *cln;

    pool = ngx_create_pool(1024, jobs->log);
    if (pool == NULL) {
        return NGX_ERROR;
    }

    run = ngx_pcalloc(pool, sizeof(orbit_jobs_run_t));
    if (run == NULL) {
        ngx_destroy_pool(pool);
        return NGX_ERROR;
    }

    run->pool = pool;
    run->jobs = jobs;

    run->log = *jobs->log;
    run->log.handler = orbit_jobs_log_context;
    run->log.data = run;

    job = &run->job;
    job->log = &run->log;
    job->data = h->data;

    if (orbit_jobs_run_copy(run, res, row) != NGX_OK) {
        ngx_destroy_pool(pool);
        return NGX_ERROR;
    }

    job->pool = ngx_create_pool(4096, &run->log);
    if (job->pool == NULL) {
        ngx_destroy_pool(pool);
        return NGX_ERROR;
    }

    /* jsonb is valid JSON: only memory can fail here */

    job->json = json_loadb((char *) job->payload.data, job->payload.len, 0,
                           NULL);

    cln = ngx_pool_cleanup_add(job->pool, 0);
    if (job->json == NULL || cln == NULL) {
        json_decref(job->json);
        ngx_destroy_pool(job->pool);
        ngx_destroy_pool(pool);
        return NGX_ERROR;
    }

    cln->handler = orbit_jobs_json_free;
    cln->data = job->json;

    /*
     * The lease runs from the claim (PostgreSQL's now() is later than
     * claim_sent).  The handler has 4/5 of it; the timer is not
     * cancelable, so a worker shutting down waits for the run.
     */

    spent = ngx_current_msec - jobs->claim_sent;
    cut = jobs->conf->lease - jobs->conf->lease / 5;

    run->lease_end = jobs->claim_sent + jobs->conf->lease;

    run->timer.handler = orbit_jobs_run_timeout;
    run->timer.data = &jobs->ident;
    run->timer.log = &run->log;

    ngx_add_timer(&run->timer, cut > spent ? cut - spent : 1);

    ngx_queue_insert_tail(&jobs->runs, &run->queue);
    jobs->nruns++;
    jobs->runs_started++;

    ngx_log_debug0(NGX_LOG_DEBUG_EVENT, &run->log, 0, "orbit jobs: run");

    rc = h->handler(job);

    if (rc == NGX_ERROR && !run->finishing) {
        orbit_jobs_run_cut(run, "its handler failed");
    }

    return NGX_OK;
}


void
orbit_job_finish(orbit_job_t *job, orbit_job_outcome_t *out)
{
    orbit_jobs_run_t  *run;

    run = (orbit_jobs_run_t *) job;

    if (run->finishing) {
        ngx_log_error(NGX_LOG_ALERT, job->log, 0,
                      "orbit jobs: a run finished twice");
        return;
    }

    run->finishing = 1;
    run->out = *out;

    if (run->timer.timer_set) {
        ngx_del_timer(&run->timer);
    }

    if (orbit_jobs_outcome_query(run) != NGX_OK) {
        orbit_jobs_run_abandon(run);
        return;
    }

    orbit_jobs_outcome_send(run);
}


/* the handler's time is up, or the worker's: its work stops, a retry */

void
orbit_jobs_run_cut(orbit_jobs_run_t *run, const char *why)
{
    orbit_job_outcome_t  out;

    ngx_log_error(NGX_LOG_WARN, &run->log, 0, "orbit jobs: %s", why);

    if (run->job.pool) {
        ngx_destroy_pool(run->job.pool);
        run->job.pool = NULL;
    }

    ngx_memzero(&out, sizeof(orbit_job_outcome_t));

    out.status = ORBIT_JOB_RETRY;
    out.error.data = (u_char *) why;
    out.error.len = ngx_strlen(why);

    orbit_job_finish(&run->job, &out);
}


/* without recording anything: the job runs again after its lease */

void
orbit_jobs_run_free(orbit_jobs_run_t *run)
{
    ngx_queue_remove(&run->queue);

    if (run->timer.timer_set) {
        ngx_del_timer(&run->timer);
    }

    if (run->job.pool) {
        ngx_destroy_pool(run->job.pool);
        run->job.pool = NULL;
    }

    /* cancels the outcome's statement; run lives in this pool */
    ngx_destroy_pool(run->pool);
}


static ngx_int_t
orbit_jobs_run_copy(orbit_jobs_run_t *run, PGresult *res, int row)
{
    int           i;
    ngx_str_t    *dst[5];
    orbit_job_t  *job;

    job = &run->job;

    dst[0] = &job->id_text;
    dst[1] = &job->kind;
    dst[2] = &job->tenant_id;
    dst[3] = &job->payload;
    dst[4] = &run->attempt;

    /* columns 1 to 5; nul-terminated, for parameters */

    for (i = 0; i < 5; i++) {
        dst[i]->len = PQgetlength(res, row, i + 1);
        dst[i]->data = ngx_pnalloc(run->pool, dst[i]->len + 1);
        if (dst[i]->data == NULL) {
            return NGX_ERROR;
        }

        ngx_memcpy(dst[i]->data, PQgetvalue(res, row, i + 1), dst[i]->len);
        dst[i]->data[dst[i]->len] = '\0';
    }

    job->id = ngx_atoof(job->id_text.data, job->id_text.len);
    job->attempt = ngx_atoi(run->attempt.data, run->attempt.len);
    job->max_attempts = ngx_atoi((u_char *) PQgetvalue(res, row, 6),
                                 PQgetlength(res, row, 6));

    if (job->id == NGX_ERROR || job->attempt == (ngx_uint_t) NGX_ERROR
        || job->max_attempts == (ngx_uint_t) NGX_ERROR)
    {
        return NGX_ERROR;
    }

    return NGX_OK;
}


static u_char *
orbit_jobs_log_context(ngx_log_t *log, u_char *buf, size_t len)
{
    orbit_jobs_run_t  *run;

    run = log->data;

    return ngx_snprintf(buf, len, ", job: %L %V, attempt: %ui",
                        run->job.id, &run->job.kind, run->job.attempt);
}


static void
orbit_jobs_json_free(void *data)
{
    json_decref(data);
}


static void
orbit_jobs_run_timeout(ngx_event_t *ev)
{
    orbit_jobs_run_t  *run;

    run = (orbit_jobs_run_t *) ((u_char *) ev
                                - offsetof(orbit_jobs_run_t, timer));

    if (run->abandoned) {
        orbit_jobs_run_end(run);
        return;
    }

    if (run->finishing) {
        /* the outcome's statement, again */
        orbit_jobs_outcome_send(run);
        return;
    }

    orbit_jobs_run_cut(run, "timed out");
}


/*
 * Ends the run from a timer: the handler that called orbit_job_finish()
 * may still be on the stack, and so may the claim's loop.  The job runs
 * again after its lease.
 */

static void
orbit_jobs_run_abandon(orbit_jobs_run_t *run)
{
    run->abandoned = 1;

    ngx_add_timer(&run->timer, 0);
}


/*
 *   WITH job AS (UPDATE jobs SET <outcome>, locked_until = NULL, ...
 *                WHERE id = $n+1 AND locked_by = $n+2 AND attempts = $n+3
 *                      AND status = 'running'
 *                RETURNING id, tenant_id, status, attempts)
 *      , effect AS (<effect: $1..$n>)
 *   SELECT orbit_job_owned(count(*)), min(status) FROM job
 *
 * A SELECT effect runs only when read: the query reads it then.
 */

static ngx_int_t
orbit_jobs_outcome_query(orbit_jobs_run_t *run)
{
    int                   n, i;
    u_char               *p, *last, set[256];
    size_t                len;
    ngx_msec_t            delay;
    ngx_uint_t            select;
    const char          **values, *effect;
    orbit_pg_query_t     *q;
    orbit_job_outcome_t  *out;

    out = &run->out;
    effect = out->effect;
    n = effect ? out->nparams : 0;

    if (out->status > ORBIT_JOB_REPEAT || n < 0 || n > 1000) {
        ngx_log_error(NGX_LOG_ALERT, &run->log, 0,
                      "orbit jobs: invalid outcome");
        return NGX_ERROR;
    }

    select = 0;

    if (effect) {
        while (*effect == ' ' || *effect == '\n' || *effect == '(') {
            effect++;
        }

        select = ngx_strncasecmp((u_char *) effect, (u_char *) "INSERT", 6)
                 && ngx_strncasecmp((u_char *) effect, (u_char *) "UPDATE", 6)
                 && ngx_strncasecmp((u_char *) effect, (u_char *) "DELETE", 6);
    }

    if (run->query == NULL) {
        run->query = orbit_pg_query_create(run->pool);
        if (run->query == NULL) {
            return NGX_ERROR;
        }
    }

    q = run->query;

    p = ngx_snprintf(set, sizeof(set) - 1, orbit_jobs_set[out->status],
                     n + 4, n + 5);
    *p = '\0';

    len = sizeof("WITH job AS (UPDATE jobs SET , locked_until = NULL,"
                 " updated_at = now() WHERE id = $ AND locked_by = $"
                 " AND attempts = $ AND status = 'running'"
                 " RETURNING id, tenant_id, status, attempts),"
                 " effect AS () SELECT orbit_job_owned(count(*)),"
                 " min(status), (SELECT count(*) FROM effect) FROM job")
          + ngx_strlen(set) + 3 * NGX_INT_T_LEN
          + (effect ? ngx_strlen(out->effect) : 0);

    p = ngx_pnalloc(run->pool, len);
    if (p == NULL) {
        return NGX_ERROR;
    }

    q->sql = (char *) p;
    last = p + len;

    p = ngx_slprintf(p, last,
                     "WITH job AS (UPDATE jobs SET %s, locked_until = NULL,"
                     " updated_at = now() WHERE id = $%d AND locked_by = $%d"
                     " AND attempts = $%d AND status = 'running'"
                     " RETURNING id, tenant_id, status, attempts)",
                     set, n + 1, n + 2, n + 3);

    if (effect) {
        p = ngx_slprintf(p, last, ", effect AS (%s)", out->effect);
    }

    p = ngx_slprintf(p, last, " SELECT orbit_job_owned(count(*)),"
                              " min(status)%s FROM job%Z",
                     select ? ", (SELECT count(*) FROM effect)" : "");

    /* parameters: the effect's, then the queue's */

    values = ngx_palloc(run->pool, (n + 5) * sizeof(char *));
    p = ngx_pnalloc(run->pool, NGX_INT_T_LEN + 1);

    if (values == NULL || p == NULL) {
        return NGX_ERROR;
    }

    for (i = 0; i < n; i++) {
        values[i] = out->values[i];
    }

    values[n] = (char *) run->job.id_text.data;
    values[n + 1] = (char *) run->jobs->worker.data;
    values[n + 2] = (char *) run->attempt.data;

    delay = out->delay;

    if (out->status == ORBIT_JOB_RETRY && delay == 0) {
        delay = orbit_jobs_backoff(run->jobs->conf, run->job.attempt);
    }

    (void) ngx_sprintf(p, "%M%Z", delay);
    out->delay = delay;

    switch (out->status) {

    case ORBIT_JOB_RETRY:
    case ORBIT_JOB_FAIL:
        values[n + 3] = (char *) ngx_pnalloc(run->pool, out->error.len + 1);
        if (values[n + 3] == NULL) {
            return NGX_ERROR;
        }

        (void) ngx_cpystrn((u_char *) values[n + 3], out->error.data,
                           out->error.len + 1);
        values[n + 4] = (char *) p;
        break;

    case ORBIT_JOB_REPEAT:
        values[n + 3] = (char *) p;
        break;

    default:
        break;
    }

    q->nparams = n + 3 + orbit_jobs_set_params[out->status];
    q->values = values;
    q->prepare = 1;
    q->handler = orbit_jobs_outcome_recorded;
    q->data = run;

    return NGX_OK;
}


static void
orbit_jobs_outcome_send(orbit_jobs_run_t *run)
{
    if (orbit_pg_query_send(run->jobs->pg, run->query) != NGX_OK) {
        orbit_jobs_outcome_later(run, &run->query->error);
    }
}


static void
orbit_jobs_outcome_later(orbit_jobs_run_t *run, ngx_str_t *why)
{
    if ((ngx_msec_int_t) (run->lease_end - ngx_current_msec)
        <= ORBIT_JOBS_OUTCOME_RETRY)
    {
        ngx_log_error(NGX_LOG_WARN, &run->log, 0,
                      "orbit jobs: outcome not recorded (%V): the job runs "
                      "again after its lease", why);
        orbit_jobs_run_abandon(run);
        return;
    }

    run->resent = 1;

    ngx_add_timer(&run->timer, ORBIT_JOBS_OUTCOME_RETRY);
}


static void
orbit_jobs_outcome_recorded(orbit_pg_query_t *q, PGresult *res)
{
    orbit_jobs_run_t  *run;

    run = q->data;

    if (res == NULL) {
        orbit_jobs_outcome_later(run, &q->error);
        return;
    }

    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        orbit_jobs_outcome_failed(run, res);
        return;
    }

    orbit_jobs_outcome_log(run, res);

    /* this worker claims its retry when it is due, not at the next poll */

    if (ngx_strcmp(PQgetvalue(res, 0, 1), "queued") == 0) {
        orbit_jobs_timer(run->jobs, run->out.delay + 1, 1);
    }

    orbit_jobs_run_end(run);
}


static void
orbit_jobs_outcome_failed(orbit_jobs_run_t *run, PGresult *res)
{
    u_char     *msg;
    size_t      len;
    ngx_str_t   why;
    const char *state, *text;

    state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
    text = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);

    if (state == NULL || text == NULL) {
        state = "";
        text = PQresultErrorMessage(res);
    }

    if (ngx_strcmp(state, "OJ001") == 0) {
        ngx_log_error(NGX_LOG_WARN, &run->log, 0,
                      run->resent ? "orbit jobs: outcome recorded already, "
                                    "or the claim was lost"
                                  : "orbit jobs: the claim was lost (its "
                                    "lease ran out): outcome dropped");
        orbit_jobs_run_end(run);
        return;
    }

    if (orbit_jobs_transient(state)) {
        why.data = (u_char *) text;
        why.len = ngx_strlen(text);
        orbit_jobs_outcome_later(run, &why);
        return;
    }

    if (run->out.effect == NULL) {
        ngx_log_error(NGX_LOG_ERR, &run->log, 0,
                      "orbit jobs: outcome not recorded: %s", text);
        orbit_jobs_run_end(run);
        return;
    }

    /*
     * The effect itself fails (a bug, a constraint): repeating the work
     * would repeat what it did outside, so the job fails, saying why.
     */

    ngx_log_error(NGX_LOG_ERR, &run->log, 0,
                  "orbit jobs: the outcome's effect failed: %s", text);

    len = sizeof("effect failed: ") - 1 + ngx_strlen(text);

    msg = ngx_pnalloc(run->pool, len);
    if (msg == NULL) {
        orbit_jobs_run_end(run);
        return;
    }

    ngx_sprintf(msg, "effect failed: %s", text);

    ngx_memzero(&run->out, sizeof(orbit_job_outcome_t));

    run->out.status = ORBIT_JOB_FAIL;
    run->out.error.data = msg;
    run->out.error.len = len;

    if (orbit_jobs_outcome_query(run) != NGX_OK) {
        orbit_jobs_run_end(run);
        return;
    }

    orbit_jobs_outcome_send(run);
}


static void
orbit_jobs_outcome_log(orbit_jobs_run_t *run, PGresult *res)
{
    char                 *status;
    orbit_job_outcome_t  *out;

    out = &run->out;
    status = PQgetvalue(res, 0, 1);

    switch (out->status) {

    case ORBIT_JOB_RETRY:
        if (ngx_strcmp(status, "failed") == 0) {
            ngx_log_error(NGX_LOG_WARN, &run->log, 0,
                          "orbit jobs: failed after its last attempt: %V",
                          &out->error);

        } else {
            ngx_log_error(NGX_LOG_INFO, &run->log, 0,
                          "orbit jobs: retry in %Mms: %V", out->delay,
                          &out->error);
        }

        break;

    case ORBIT_JOB_FAIL:
        ngx_log_error(NGX_LOG_WARN, &run->log, 0,
                      "orbit jobs: failed: %V", &out->error);
        break;

    default:
        ngx_log_debug1(NGX_LOG_DEBUG_EVENT, &run->log, 0,
                       "orbit jobs: %s", status);
        break;
    }
}


/* worth trying again: connection, rollback (deadlock, serialization),
 * resources, operator intervention, system errors, a lock not available */

static ngx_uint_t
orbit_jobs_transient(const char *state)
{
    static const char  *classes[] = { "08", "40", "53", "57", "58", NULL };

    ngx_uint_t  i;

    for (i = 0; classes[i]; i++) {
        if (ngx_strncmp(state, classes[i], 2) == 0) {
            return 1;
        }
    }

    return ngx_strcmp(state, "55P03") == 0;
}


/*
 * base * 2^(attempt - 1), at most backoff_max, with "equal jitter": half
 * of it fixed, half random, so the retries of a burst spread out.
 */

static ngx_msec_t
orbit_jobs_backoff(orbit_jobs_conf_t *jc, ngx_uint_t attempt)
{
    uint64_t    delay;
    ngx_uint_t  shift;

    shift = attempt > 1 ? attempt - 1 : 0;

    delay = (shift >= 32) ? jc->backoff_max
                          : ((uint64_t) jc->backoff << shift);

    if (delay > jc->backoff_max) {
        delay = jc->backoff_max;
    }

    return (ngx_msec_t) (delay / 2 + (uint64_t) ngx_random() % (delay / 2 + 1));
}


static void
orbit_jobs_run_end(orbit_jobs_run_t *run)
{
    orbit_jobs_t  *jobs;

    jobs = run->jobs;

    orbit_jobs_run_free(run);
    orbit_jobs_run_ended(jobs);
}
