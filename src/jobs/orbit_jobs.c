/*
 * OrbitDesk: the job queue of a worker: configuration, waking, claiming,
 * shutdown, and the hourly maintenance job.  One job's run and its outcome
 * are in orbit_jobs_run.c.
 *
 * A worker claims when a NOTIFY names a kind it has a handler for (the
 * notifications of one read post one event), when its timer fires (the
 * poll interval, or sooner the next run_at or lease end the last claim
 * saw), and when a run ends while a claim was wanted.  At most one claim
 * is in flight, for at most the free slots, and claims start at most every
 * ORBIT_JOBS_COOLDOWN ms unless the last one came back full: a stream of
 * inserts, which every worker hears, costs each worker at most one claim
 * per window, while a backlog is taken as fast as slots free up.
 *
 * Shutdown: an idle connection of ours (a /dev/null descriptor, never in
 * epoll) is what nginx's graceful shutdown closes first: we stop claiming
 * and let the running jobs end, each held by its non-cancelable cut-off
 * timer, so the worker waits for them (or for their cut-off).  When
 * worker_shutdown_timeout passes nginx closes every connection: the runs
 * still going are cut off and retried.  A fast stop (SIGTERM) leaves them
 * to their lease.
 */

#include "jobs/orbit_jobs_int.h"


#define ORBIT_JOBS_CHANNEL      "orbit_jobs"
#define ORBIT_JOBS_MAINTENANCE  "maintenance"
#define ORBIT_JOBS_PERIOD       (3600 * 1000)
#define ORBIT_JOBS_COOLDOWN     10


/*
 * Ready jobs of our kinds, oldest first: those whose lease ran out, then
 * the due ones, each kind read in run_at order on jobs_due_idx.  A lease
 * that ran out on the last attempt fails the job instead (a job that kills
 * its worker stops there).  The first column is the milliseconds until
 * the next job of ours is due or the next lease ends, on every row; with
 * nothing claimed there is one row with that alone.
 */

static const char  orbit_jobs_claim_sql[] =
    "WITH ready AS ("
    "    SELECT id FROM (SELECT id FROM jobs"
    "                    WHERE status = 'running' AND locked_until < now()"
    "                          AND kind = ANY ($1::text[])"
    "                    ORDER BY locked_until LIMIT $2::integer"
    "                    FOR UPDATE SKIP LOCKED) e"
    "    UNION ALL"
    "    (SELECT d.id FROM unnest($1::text[]) AS k (kind),"
    "         LATERAL (SELECT id, run_at FROM jobs"
    "                  WHERE status = 'queued' AND kind = k.kind"
    "                        AND run_at <= now()"
    "                  ORDER BY run_at LIMIT $2::integer"
    "                  FOR UPDATE SKIP LOCKED) d"
    "     ORDER BY d.run_at)"
    "    LIMIT $2::integer"
    "), claimed AS ("
    "    UPDATE jobs j SET"
    "        status = CASE WHEN j.status = 'running'"
    "                           AND j.attempts >= j.max_attempts"
    "                      THEN 'failed' ELSE 'running' END,"
    "        last_error = CASE WHEN j.status = 'running'"
    "                               AND j.attempts >= j.max_attempts"
    "                          THEN 'its lease ran out on the last attempt'"
    "                          ELSE j.last_error END,"
    "        attempts = j.attempts + 1,"
    "        locked_until = now() + $3::float8 * interval '1 millisecond',"
    "        locked_by = $4,"
    "        updated_at = now()"
    "    FROM ready WHERE j.id = ready.id"
    "    RETURNING j.id, j.kind, j.tenant_id, j.payload, j.attempts,"
    "              j.max_attempts, j.status"
    "), next AS ("
    "    SELECT least("
    "        (SELECT min(n.run_at) FROM unnest($1::text[]) AS k (kind),"
    "             LATERAL (SELECT run_at FROM jobs"
    "                      WHERE status = 'queued' AND kind = k.kind"
    "                            AND run_at > now()"
    "                      ORDER BY run_at LIMIT 1) n),"
    "        (SELECT min(locked_until) FROM jobs"
    "         WHERE status = 'running' AND locked_until >= now()"
    "               AND kind = ANY ($1::text[]))) AS at"
    ")"
    "SELECT ceil(extract(epoch FROM next.at - now()) * 1000)::bigint,"
    "       c.id, c.kind, c.tenant_id, c.payload, c.attempts,"
    "       c.max_attempts"
    " FROM next LEFT JOIN claimed c ON c.status = 'running'";


/* one maintenance job waits or runs at a time (jobs_maintenance_key) */

static const char  orbit_jobs_seed_sql[] =
    "INSERT INTO jobs (kind) VALUES ('" ORBIT_JOBS_MAINTENANCE "')"
    " ON CONFLICT (kind) WHERE kind = '" ORBIT_JOBS_MAINTENANCE "'"
    " AND status IN ('queued', 'running') DO NOTHING";


static ngx_int_t orbit_jobs_kinds(orbit_jobs_t *jobs, ngx_pool_t *pool);
static ngx_int_t orbit_jobs_watch(orbit_jobs_t *jobs);
static void orbit_jobs_shutdown(ngx_event_t *ev);
static void orbit_jobs_notified(void *data, const char *channel,
    const char *payload);
static void orbit_jobs_woken(ngx_event_t *ev);
static void orbit_jobs_claim(orbit_jobs_t *jobs);
static void orbit_jobs_claimed(orbit_pg_query_t *q, PGresult *res);
static void orbit_jobs_seed(orbit_jobs_t *jobs);
static void orbit_jobs_seeded(orbit_pg_query_t *q, PGresult *res);
static void orbit_jobs_notify_done(orbit_pg_query_t *q, PGresult *res);
static ngx_int_t orbit_jobs_maintain(orbit_job_t *job);


void
orbit_jobs_conf_create(orbit_jobs_conf_t *jc)
{
    jc->enable = NGX_CONF_UNSET;
    jc->concurrency = NGX_CONF_UNSET_UINT;
    jc->lease = NGX_CONF_UNSET_MSEC;
    jc->poll = NGX_CONF_UNSET_MSEC;
    jc->backoff = NGX_CONF_UNSET_MSEC;
    jc->backoff_max = NGX_CONF_UNSET_MSEC;
    jc->keep = NGX_CONF_UNSET;
    jc->handlers = NULL;
}


char *
orbit_jobs_conf_init(ngx_conf_t *cf, orbit_jobs_conf_t *jc,
    ngx_uint_t postgres)
{
    ngx_conf_init_value(jc->enable, postgres ? 1 : 0);
    ngx_conf_init_uint_value(jc->concurrency, 16);
    ngx_conf_init_msec_value(jc->lease, 5 * 60 * 1000);
    ngx_conf_init_msec_value(jc->poll, 5000);
    ngx_conf_init_msec_value(jc->backoff, 1000);
    ngx_conf_init_msec_value(jc->backoff_max, 3600 * 1000);
    ngx_conf_init_value(jc->keep, 7 * 86400);

    if (!jc->enable) {
        return NGX_CONF_OK;
    }

    if (!postgres) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"orbit_jobs\" needs \"orbit_postgres\"");
        return NGX_CONF_ERROR;
    }

    if (jc->concurrency == 0 || jc->lease < 1000 || jc->poll == 0
        || jc->backoff == 0)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"orbit_jobs_concurrency\" must be 1 or more, "
                           "\"orbit_jobs_lease\" 1s or more, "
                           "\"orbit_jobs_poll\" and \"orbit_jobs_backoff\" "
                           "more than 0");
        return NGX_CONF_ERROR;
    }

    if (orbit_jobs_register(cf, jc, ORBIT_JOBS_MAINTENANCE,
                            orbit_jobs_maintain, jc)
        != NGX_OK)
    {
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


ngx_int_t
orbit_jobs_register(ngx_conf_t *cf, orbit_jobs_conf_t *jc, const char *kind,
    orbit_job_handler_pt handler, void *data)
{
    size_t                 len;
    ngx_uint_t             i;
    orbit_jobs_handler_t  *h;

    /* a kind goes into an array literal unquoted: keep it plain */

    len = ngx_strlen(kind);

    if (len == 0 || len > 64
        || kind[strspn(kind, "abcdefghijklmnopqrstuvwxyz0123456789._-")])
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid job kind \"%s\": 1 to 64 of a-z 0-9 . _ -",
                           kind);
        return NGX_ERROR;
    }

    if (jc->handlers == NULL) {
        jc->handlers = ngx_array_create(cf->pool, 4,
                                        sizeof(orbit_jobs_handler_t));
        if (jc->handlers == NULL) {
            return NGX_ERROR;
        }
    }

    h = jc->handlers->elts;

    for (i = 0; i < jc->handlers->nelts; i++) {
        if (h[i].kind.len == len && ngx_strncmp(h[i].kind.data, kind, len) == 0)
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "job kind \"%s\" has a handler already", kind);
            return NGX_ERROR;
        }
    }

    h = ngx_array_push(jc->handlers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    h->kind.data = (u_char *) kind;
    h->kind.len = len;
    h->handler = handler;
    h->data = data;

    return NGX_OK;
}


/* orbit_jobs_backoff BASE [max=TIME]; cmd->offset: the orbit_jobs_conf_t */

char *
orbit_jobs_backoff_directive(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    orbit_jobs_conf_t  *jc;

    ngx_str_t          *value, s;

    jc = (orbit_jobs_conf_t *) ((u_char *) conf + cmd->offset);

    if (jc->backoff != NGX_CONF_UNSET_MSEC) {
        return "is duplicate";
    }

    value = cf->args->elts;

    jc->backoff = ngx_parse_time(&value[1], 0);
    if (jc->backoff == (ngx_msec_t) NGX_ERROR) {
        return "has an invalid time";
    }

    if (cf->args->nelts == 3) {
        if (ngx_strncmp(value[2].data, "max=", 4) != 0) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid parameter \"%V\"", &value[2]);
            return NGX_CONF_ERROR;
        }

        s.data = value[2].data + 4;
        s.len = value[2].len - 4;

        jc->backoff_max = ngx_parse_time(&s, 0);
        if (jc->backoff_max == (ngx_msec_t) NGX_ERROR
            || jc->backoff_max < jc->backoff)
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid parameter \"%V\"", &value[2]);
            return NGX_CONF_ERROR;
        }
    }

    return NGX_CONF_OK;
}


orbit_jobs_t *
orbit_jobs_create(ngx_cycle_t *cycle, orbit_jobs_conf_t *jc,
    orbit_pg_pool_t *pg)
{
    orbit_jobs_t  *jobs;

    jobs = ngx_pcalloc(cycle->pool, sizeof(orbit_jobs_t));
    if (jobs == NULL) {
        return NULL;
    }

    jobs->conf = jc;
    jobs->pg = pg;
    jobs->log = cycle->log;

    ngx_queue_init(&jobs->runs);

    /* debug builds log a timer with the fd of the connection in ev->data */

    jobs->ident.fd = (ngx_socket_t) -1;
    jobs->ident.data = jobs;
    jobs->ident.log = jobs->log;

    jobs->timer.handler = orbit_jobs_woken;
    jobs->timer.data = &jobs->ident;
    jobs->timer.log = jobs->log;
    jobs->timer.cancelable = 1;

    jobs->wake.handler = orbit_jobs_woken;
    jobs->wake.data = &jobs->ident;
    jobs->wake.log = jobs->log;

    if (orbit_jobs_kinds(jobs, cycle->pool) != NGX_OK) {
        return NULL;
    }

    jobs->worker.data = ngx_pnalloc(cycle->pool,
                                    cycle->hostname.len + NGX_INT_T_LEN + 2);
    if (jobs->worker.data == NULL) {
        return NULL;
    }

    jobs->worker.len = ngx_sprintf(jobs->worker.data, "%V/%P%Z",
                                   &cycle->hostname, ngx_pid)
                       - jobs->worker.data - 1;

    if (orbit_pg_listen(pg, ORBIT_JOBS_CHANNEL, orbit_jobs_notified, jobs)
        != NGX_OK)
    {
        return NULL;
    }

    if (orbit_jobs_watch(jobs) != NGX_OK) {
        return NULL;
    }

    /* the pool queues these until its connections are up */

    orbit_jobs_claim(jobs);

    return jobs;
}


void
orbit_jobs_destroy(orbit_jobs_t *jobs)
{
    ngx_queue_t       *q;
    orbit_jobs_run_t  *run;

    ngx_log_error(NGX_LOG_INFO, jobs->log, 0,
                  "orbit jobs: %ui notifications, %ui claims, %ui runs",
                  jobs->notified, jobs->claims, jobs->runs_started);

    jobs->stopping = 1;

    if (jobs->timer.timer_set) {
        ngx_del_timer(&jobs->timer);
    }

    if (jobs->wake.posted) {
        ngx_delete_posted_event(&jobs->wake);
    }

    /* the pools' cleanups cancel the queries */

    if (jobs->claim) {
        ngx_destroy_pool(jobs->claim);
        jobs->claim = NULL;
    }

    if (jobs->seed) {
        ngx_destroy_pool(jobs->seed);
        jobs->seed = NULL;
    }

    /* runs cut off here run again after their lease */

    while (!ngx_queue_empty(&jobs->runs)) {
        q = ngx_queue_head(&jobs->runs);
        run = ngx_queue_data(q, orbit_jobs_run_t, queue);
        orbit_jobs_run_free(run);
    }

    jobs->nruns = 0;

    if (jobs->watch) {
        ngx_close_file(jobs->watch->fd);
        jobs->watch->fd = (ngx_socket_t) -1;
        ngx_free_connection(jobs->watch);
        jobs->watch = NULL;
    }
}


orbit_jobs_handler_t *
orbit_jobs_handler(orbit_jobs_t *jobs, u_char *kind, size_t len)
{
    ngx_uint_t             i;
    orbit_jobs_handler_t  *h;

    h = jobs->conf->handlers->elts;

    for (i = 0; i < jobs->conf->handlers->nelts; i++) {
        if (h[i].kind.len == len && ngx_strncmp(h[i].kind.data, kind, len) == 0)
        {
            return &h[i];
        }
    }

    return NULL;
}


/* a run has ended: its slot is free */

void
orbit_jobs_run_ended(orbit_jobs_t *jobs)
{
    jobs->nruns--;

    if (jobs->again) {
        orbit_jobs_claim(jobs);
    }
}


/* the kinds with a handler, as a text[] literal: {"a","b"} */

static ngx_int_t
orbit_jobs_kinds(orbit_jobs_t *jobs, ngx_pool_t *pool)
{
    u_char                *p;
    size_t                 len;
    ngx_uint_t             i;
    orbit_jobs_handler_t  *h;

    h = jobs->conf->handlers->elts;
    len = sizeof("{}");

    for (i = 0; i < jobs->conf->handlers->nelts; i++) {
        len += h[i].kind.len + sizeof("\"\",") - 1;
    }

    p = ngx_pnalloc(pool, len);
    if (p == NULL) {
        return NGX_ERROR;
    }

    jobs->kinds.data = p;
    *p++ = '{';

    for (i = 0; i < jobs->conf->handlers->nelts; i++) {
        p = ngx_sprintf(p, "%s\"%V\"", i ? "," : "", &h[i].kind);
    }

    *p++ = '}';
    *p = '\0';

    jobs->kinds.len = p - jobs->kinds.data;

    return NGX_OK;
}


/*
 * nginx tells idle connections, and at worker_shutdown_timeout every
 * connection, that the worker is going: one of ours hears it for the
 * queue.  Its descriptor is /dev/null, never watched.
 */

static ngx_int_t
orbit_jobs_watch(orbit_jobs_t *jobs)
{
    ngx_fd_t           fd;
    ngx_connection_t  *c;

    fd = ngx_open_file("/dev/null", NGX_FILE_RDONLY, NGX_FILE_OPEN, 0);
    if (fd == NGX_INVALID_FILE) {
        ngx_log_error(NGX_LOG_EMERG, jobs->log, ngx_errno,
                      ngx_open_file_n " \"/dev/null\" failed");
        return NGX_ERROR;
    }

    c = ngx_get_connection(fd, jobs->log);
    if (c == NULL) {
        ngx_close_file(fd);
        return NGX_ERROR;
    }

    c->data = jobs;
    c->idle = 1;
    c->read->handler = orbit_jobs_shutdown;
    c->read->log = jobs->log;
    c->write->log = jobs->log;

    jobs->watch = c;

    return NGX_OK;
}


static void
orbit_jobs_shutdown(ngx_event_t *ev)
{
    ngx_queue_t       *q, *next;
    ngx_connection_t  *c;
    orbit_jobs_t      *jobs;
    orbit_jobs_run_t  *run;

    c = ev->data;
    jobs = c->data;

    if (!c->close) {
        return;
    }

    c->close = 0;

    if (!jobs->stopping) {
        jobs->stopping = 1;

        ngx_log_error(NGX_LOG_INFO, jobs->log, 0,
                      "orbit jobs: no more claims, %ui running",
                      jobs->nruns);

        if (jobs->timer.timer_set) {
            ngx_del_timer(&jobs->timer);
        }

        if (jobs->wake.posted) {
            ngx_delete_posted_event(&jobs->wake);
        }
    }

    if (!c->error) {
        return;
    }

    /* worker_shutdown_timeout: what still runs is retried */

    c->error = 0;

    for (q = ngx_queue_head(&jobs->runs);
         q != ngx_queue_sentinel(&jobs->runs);
         q = next)
    {
        next = ngx_queue_next(q);
        run = ngx_queue_data(q, orbit_jobs_run_t, queue);

        if (!run->finishing) {
            orbit_jobs_run_cut(run, "cut off by the worker's shutdown");
        }
    }
}


static void
orbit_jobs_notified(void *data, const char *channel, const char *payload)
{
    orbit_jobs_t  *jobs = data;

    if (orbit_jobs_wake(jobs, (u_char *) payload, ngx_strlen(payload))
        == NGX_OK)
    {
        jobs->notified++;
    }
}


/*
 * Jobs of a kind were enqueued (a NOTIFY, or this worker's own committed
 * insert): a claim soon, when the kind is one of ours.  NGX_DECLINED: it
 * is not; NGX_ABORT: this worker claims nothing (no queue, or stopping).
 */

ngx_int_t
orbit_jobs_wake(orbit_jobs_t *jobs, u_char *kind, size_t len)
{
    if (jobs == NULL || jobs->stopping) {
        return NGX_ABORT;
    }

    if (orbit_jobs_handler(jobs, kind, len) == NULL) {
        return NGX_DECLINED;
    }

    if (!jobs->wake.posted) {
        ngx_post_event(&jobs->wake, &ngx_posted_events);
    }

    return NGX_OK;
}


/*
 * The other workers and nodes told of a kind's committed jobs, by a
 * NOTIFY of its own (a transaction of one statement, after theirs): for
 * an inserter whose own worker claims nothing.  Nothing is waited for.
 */

ngx_int_t
orbit_jobs_notify(orbit_pg_pool_t *pg, const char *kind, ngx_log_t *log)
{
    size_t             len;
    u_char            *p;
    ngx_pool_t        *pool;
    const char       **v;
    orbit_pg_query_t  *q;

    if (pg == NULL) {
        return NGX_ERROR;
    }

    pool = ngx_create_pool(512, log);
    if (pool == NULL) {
        return NGX_ERROR;
    }

    len = ngx_strlen(kind);

    q = orbit_pg_query_create(pool);
    v = ngx_palloc(pool, sizeof(const char *));
    p = ngx_pnalloc(pool, len + 1);

    if (q == NULL || v == NULL || p == NULL) {
        ngx_destroy_pool(pool);
        return NGX_ERROR;
    }

    *ngx_cpymem(p, kind, len) = '\0';
    v[0] = (const char *) p;

    q->sql = "SELECT pg_notify('" ORBIT_JOBS_CHANNEL "', $1)";
    q->nparams = 1;
    q->values = v;
    q->handler = orbit_jobs_notify_done;
    q->data = pool;

    if (orbit_pg_query_send(pg, q) != NGX_OK) {
        ngx_destroy_pool(pool);
        return NGX_ERROR;
    }

    return NGX_OK;
}


static void
orbit_jobs_notify_done(orbit_pg_query_t *q, PGresult *res)
{
    ngx_pool_t  *pool = q->data;

    if (res == NULL || PQresultStatus(res) != PGRES_TUPLES_OK) {
        ngx_log_error(NGX_LOG_WARN, pool->log, 0,
                      "orbit jobs: NOTIFY not sent: %s",
                      res ? PQresultErrorMessage(res) : "no answer");
    }

    ngx_destroy_pool(pool);
}


static void
orbit_jobs_woken(ngx_event_t *ev)
{
    ngx_connection_t  *c;

    c = ev->data;

    orbit_jobs_claim(c->data);
}


static void
orbit_jobs_claim(orbit_jobs_t *jobs)
{
    u_char            *p;
    ngx_uint_t         free;
    ngx_pool_t        *pool;
    ngx_msec_int_t     wait;
    orbit_pg_query_t  *q;
    const char       **values;

    if (jobs->stopping || ngx_exiting || ngx_terminate) {
        return;
    }

    if (!jobs->seeded && jobs->seed == NULL) {
        orbit_jobs_seed(jobs);
    }

    free = jobs->conf->concurrency - jobs->nruns;

    if (jobs->claim || free == 0) {
        /* when the claim returns, or a run ends */
        jobs->again = 1;
        return;
    }

    wait = (ngx_msec_int_t) (jobs->claim_sent + ORBIT_JOBS_COOLDOWN
                             - ngx_current_msec);

    if (jobs->claims && !jobs->backlog && wait > 0) {
        orbit_jobs_timer(jobs, wait, 1);
        return;
    }

    jobs->again = 0;

    /* until this claim answers: the poll interval (PostgreSQL away...) */
    orbit_jobs_timer(jobs, jobs->conf->poll, 0);

    pool = ngx_create_pool(1024, jobs->log);
    if (pool == NULL) {
        return;
    }

    q = orbit_pg_query_create(pool);
    values = ngx_palloc(pool, 4 * sizeof(char *));
    p = ngx_pnalloc(pool, 2 * (NGX_INT_T_LEN + 1));

    if (q == NULL || values == NULL || p == NULL) {
        ngx_destroy_pool(pool);
        return;
    }

    values[0] = (char *) jobs->kinds.data;
    values[1] = (char *) p;
    p = ngx_sprintf(p, "%ui%Z", free);
    values[2] = (char *) p;
    (void) ngx_sprintf(p, "%M%Z", jobs->conf->lease);
    values[3] = (char *) jobs->worker.data;

    q->sql = orbit_jobs_claim_sql;
    q->nparams = 4;
    q->values = values;
    q->prepare = 1;
    q->handler = orbit_jobs_claimed;
    q->data = jobs;

    if (orbit_pg_query_send(jobs->pg, q) != NGX_OK) {
        ngx_log_debug1(NGX_LOG_DEBUG_EVENT, jobs->log, 0,
                       "orbit jobs: no claim: %V", &q->error);
        ngx_destroy_pool(pool);
        return;
    }

    jobs->claim = pool;
    jobs->claim_sent = ngx_current_msec;
    jobs->asked = free;
    jobs->claims++;
}


static void
orbit_jobs_claimed(orbit_pg_query_t *q, PGresult *res)
{
    int                    i, n, started;
    char                  *next;
    ngx_int_t              ms;
    orbit_jobs_t          *jobs;
    orbit_jobs_handler_t  *h;

    jobs = q->data;

    if (res == NULL) {
        /* PostgreSQL away: the poll timer tries again */
        ngx_log_error(NGX_LOG_INFO, jobs->log, 0,
                      "orbit jobs: claim failed: %V", &q->error);
        ngx_destroy_pool(jobs->claim);
        jobs->claim = NULL;
        return;
    }

    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        ngx_log_error(NGX_LOG_ERR, jobs->log, 0,
                      "orbit jobs: claim failed: %s",
                      PQresultErrorMessage(res));
        ngx_destroy_pool(jobs->claim);
        jobs->claim = NULL;
        return;
    }

    n = PQntuples(res);
    started = 0;

    for (i = 0; i < n; i++) {
        if (PQgetisnull(res, i, 1)) {
            continue;
        }

        h = orbit_jobs_handler(jobs, (u_char *) PQgetvalue(res, i, 2),
                               PQgetlength(res, i, 2));

        /* a run that cannot start leaves its job to the lease */

        if (h) {
            (void) orbit_jobs_run_start(jobs, h, res, i);
        }

        started++;
    }

    ngx_log_debug2(NGX_LOG_DEBUG_EVENT, jobs->log, 0,
                   "orbit jobs: claimed %d, running %ui", started,
                   jobs->nruns);

    next = PQgetisnull(res, 0, 0) ? NULL : PQgetvalue(res, 0, 0);
    ms = next ? ngx_atoi((u_char *) next, ngx_strlen(next)) : NGX_ERROR;

    ngx_destroy_pool(jobs->claim);
    jobs->claim = NULL;

    /* a full batch: there may be more */
    jobs->backlog = ((ngx_uint_t) started == jobs->asked);
    jobs->again |= jobs->backlog;

    if (jobs->stopping) {
        return;
    }

    orbit_jobs_timer(jobs, ms == NGX_ERROR ? jobs->conf->poll
                                           : ngx_min((ngx_msec_t) ms + 1,
                                                     jobs->conf->poll), 0);

    if (jobs->again) {
        orbit_jobs_claim(jobs);
    }
}


/*
 * ngx_add_timer() keeps a timer that moves by less than 300 ms: ours are
 * moved exactly.  earlier: only if that is sooner than it is set for.
 */

void
orbit_jobs_timer(orbit_jobs_t *jobs, ngx_msec_t after, ngx_uint_t earlier)
{
    if (jobs->stopping) {
        return;
    }

    if (jobs->timer.timer_set) {
        if (earlier
            && (ngx_msec_int_t) (jobs->timer.timer.key - ngx_current_msec)
               <= (ngx_msec_int_t) after)
        {
            return;
        }

        ngx_del_timer(&jobs->timer);
    }

    ngx_add_timer(&jobs->timer, after);
}


static void
orbit_jobs_seed(orbit_jobs_t *jobs)
{
    ngx_pool_t        *pool;
    orbit_pg_query_t  *q;

    pool = ngx_create_pool(512, jobs->log);
    if (pool == NULL) {
        return;
    }

    q = orbit_pg_query_create(pool);
    if (q == NULL) {
        ngx_destroy_pool(pool);
        return;
    }

    q->sql = orbit_jobs_seed_sql;
    q->handler = orbit_jobs_seeded;
    q->data = jobs;

    if (orbit_pg_query_send(jobs->pg, q) != NGX_OK) {
        ngx_destroy_pool(pool);
        return;
    }

    jobs->seed = pool;
}


static void
orbit_jobs_seeded(orbit_pg_query_t *q, PGresult *res)
{
    orbit_jobs_t  *jobs;

    jobs = q->data;

    if (res && PQresultStatus(res) == PGRES_COMMAND_OK) {
        jobs->seeded = 1;

    } else if (res) {
        ngx_log_error(NGX_LOG_ERR, jobs->log, 0,
                      "orbit jobs: maintenance job not enqueued: %s",
                      PQresultErrorMessage(res));
    }

    /* else PostgreSQL is away: the next claim tries again */

    ngx_destroy_pool(jobs->seed);
    jobs->seed = NULL;
}


/*
 * The maintenance job: what time makes necessary (orbit_maintenance():
 * partitions ahead), and done jobs older than orbit_jobs_keep purged; in
 * the statement that sets the job's next run, an hour on.
 */

static ngx_int_t
orbit_jobs_maintain(orbit_job_t *job)
{
    orbit_jobs_conf_t    *jc;
    const char          **values;
    orbit_job_outcome_t   out;

    jc = job->data;

    values = ngx_palloc(job->pool, sizeof(char *));
    if (values == NULL) {
        return NGX_ERROR;
    }

    values[0] = (char *) ngx_pnalloc(job->pool, NGX_TIME_T_LEN + 1);
    if (values[0] == NULL) {
        return NGX_ERROR;
    }

    (void) ngx_sprintf((u_char *) values[0], "%T%Z", jc->keep);

    ngx_memzero(&out, sizeof(orbit_job_outcome_t));

    out.status = ORBIT_JOB_REPEAT;
    out.delay = ORBIT_JOBS_PERIOD;
    out.effect = "SELECT orbit_jobs_maintenance("
                 "$1::float8 * interval '1 second')";
    out.nparams = 1;
    out.values = values;

    orbit_job_finish(job, &out);

    return NGX_OK;
}
