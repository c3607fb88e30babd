/*
 * OrbitDesk: libpq in the nginx event loop.
 *
 * A connection goes closed -> connecting -> init -> idle <-> busy, and back
 * to closed (then a backoff timer) whenever libpq reports it broken.  Every
 * event of its socket drives the step the connection is in; with epoll's
 * edge-triggered events the busy and idle steps therefore always read and
 * flush all they can, rather than trusting which event fired.
 *
 * The server enforces the pool's timeout too (statement_timeout, set by the
 * init step), so a query the client gave up on ends on the server as well
 * and the connection drains back into the pool instead of leaking a busy
 * backend.  libpq's own cancel request would block: it is not used.
 */

#include "io/orbit_pg.h"


#define ORBIT_PG_BACKOFF_MIN   100
#define ORBIT_PG_BACKOFF_MAX   1000
#define ORBIT_PG_DRAIN_GRACE   1000


typedef enum {
    ORBIT_PG_CLOSED = 0,
    ORBIT_PG_CONNECTING,
    ORBIT_PG_INIT,
    ORBIT_PG_IDLE,
    ORBIT_PG_BUSY
} orbit_pg_state_e;


typedef struct {
    ngx_str_t                    channel;      /* quoted identifier */
    orbit_pg_notify_pt           handler;
    void                        *data;
} orbit_pg_listen_t;


typedef struct {
    orbit_pg_pool_t             *pool;
    PGconn                      *pg;
    ngx_connection_t            *c;
    orbit_pg_state_e             state;
    PostgresPollingStatusType    poll;
    orbit_pg_query_t            *query;        /* NULL: none or abandoned */
    PGresult                    *result;
    ngx_event_t                  timer;        /* connect, drain, backoff */
    ngx_msec_t                   backoff;
    ngx_queue_t                  idle;
    unsigned                     listener:1;
    unsigned                     flushing:1;
    unsigned                     in_idle:1;
} orbit_pg_conn_t;


struct orbit_pg_pool_s {
    orbit_pg_conf_t             *conf;
    ngx_log_t                   *log;
    ngx_pool_t                  *mem;
    orbit_pg_conn_t             *conns;
    orbit_pg_conn_t             *listener;
    ngx_queue_t                  idle;
    ngx_queue_t                  waiting;
    ngx_uint_t                   nwaiting;
    ngx_uint_t                   up;
    ngx_uint_t                   connecting;
    ngx_array_t                  listens;      /* of orbit_pg_listen_t */
    u_char                       init_sql[64];
    u_char                       error[256];
    unsigned                     listen_dirty:1;
    unsigned                     destroyed:1;
};


static void orbit_pg_connect(orbit_pg_conn_t *pc);
static ngx_int_t orbit_pg_wrap_socket(orbit_pg_conn_t *pc);
static void orbit_pg_event_handler(ngx_event_t *ev);
static void orbit_pg_connect_step(orbit_pg_conn_t *pc, ngx_event_t *ev);
static void orbit_pg_connected(orbit_pg_conn_t *pc);
static void orbit_pg_busy_step(orbit_pg_conn_t *pc);
static void orbit_pg_idle_step(orbit_pg_conn_t *pc);
static void orbit_pg_deliver_notifies(orbit_pg_conn_t *pc);
static void orbit_pg_command_done(orbit_pg_conn_t *pc, PGresult *res);
static void orbit_pg_query_done(orbit_pg_conn_t *pc, PGresult *res);
static void orbit_pg_conn_ready(orbit_pg_conn_t *pc);
static ngx_int_t orbit_pg_conn_flush(orbit_pg_conn_t *pc);
static ngx_int_t orbit_pg_start(orbit_pg_conn_t *pc, orbit_pg_query_t *q);
static ngx_int_t orbit_pg_send_listens(orbit_pg_conn_t *pc);
static void orbit_pg_broken(orbit_pg_conn_t *pc, const char *why);
static void orbit_pg_close(orbit_pg_conn_t *pc);
static void orbit_pg_conn_timer(ngx_event_t *ev);
static void orbit_pg_query_timeout(ngx_event_t *ev);
static void orbit_pg_query_fail(orbit_pg_query_t *q, const char *why);
static void orbit_pg_fail_waiting(orbit_pg_pool_t *pool);
static void orbit_pg_query_cleanup(void *data);
static void orbit_pg_set_error(orbit_pg_pool_t *pool, const char *prefix,
    const char *msg);


orbit_pg_pool_t *
orbit_pg_pool_create(ngx_cycle_t *cycle, orbit_pg_conf_t *conf)
{
    ngx_uint_t        i;
    orbit_pg_pool_t  *pool;

    pool = ngx_pcalloc(cycle->pool, sizeof(orbit_pg_pool_t));
    if (pool == NULL) {
        return NULL;
    }

    pool->conf = conf;
    pool->log = cycle->log;
    pool->mem = cycle->pool;

    ngx_queue_init(&pool->idle);
    ngx_queue_init(&pool->waiting);

    if (ngx_array_init(&pool->listens, cycle->pool, 4,
                       sizeof(orbit_pg_listen_t))
        != NGX_OK)
    {
        return NULL;
    }

    ngx_snprintf(pool->init_sql, sizeof(pool->init_sql),
                 "SET statement_timeout = %M%Z", conf->timeout);

    pool->conns = ngx_pcalloc(cycle->pool,
                              conf->size * sizeof(orbit_pg_conn_t));
    if (pool->conns == NULL) {
        return NULL;
    }

    for (i = 0; i < conf->size; i++) {
        pool->conns[i].pool = pool;
        orbit_pg_connect(&pool->conns[i]);
    }

    return pool;
}


void
orbit_pg_pool_destroy(orbit_pg_pool_t *pool)
{
    ngx_uint_t         i;
    ngx_queue_t       *qu;
    orbit_pg_query_t  *q;

    pool->destroyed = 1;

    while (!ngx_queue_empty(&pool->waiting)) {
        qu = ngx_queue_head(&pool->waiting);
        q = ngx_queue_data(qu, orbit_pg_query_t, queue);
        orbit_pg_query_cancel(q);
    }

    for (i = 0; i < pool->conf->size; i++) {
        if (pool->conns[i].query) {
            orbit_pg_query_cancel(pool->conns[i].query);
        }

        orbit_pg_close(&pool->conns[i]);
    }

    if (pool->listener) {
        orbit_pg_close(pool->listener);
    }
}


ngx_uint_t
orbit_pg_pool_up(orbit_pg_pool_t *pool)
{
    return pool->up;
}


orbit_pg_query_t *
orbit_pg_query_create(ngx_pool_t *mem)
{
    orbit_pg_query_t    *q;
    ngx_pool_cleanup_t  *cln;

    cln = ngx_pool_cleanup_add(mem, sizeof(orbit_pg_query_t));
    if (cln == NULL) {
        return NULL;
    }

    q = cln->data;
    ngx_memzero(q, sizeof(orbit_pg_query_t));
    q->mem = mem;

    cln->handler = orbit_pg_query_cleanup;

    return q;
}


ngx_int_t
orbit_pg_query_send(orbit_pg_pool_t *pool, orbit_pg_query_t *q)
{
    ngx_queue_t      *qu;
    orbit_pg_conn_t  *pc;

    q->pool = pool;
    q->timedout = 0;
    ngx_str_null(&q->error);

    if (pool->destroyed) {
        orbit_pg_query_fail(q, "postgres pool is shutting down");
        return NGX_DECLINED;
    }

    while (!ngx_queue_empty(&pool->idle)) {
        qu = ngx_queue_head(&pool->idle);
        pc = ngx_queue_data(qu, orbit_pg_conn_t, idle);

        ngx_queue_remove(qu);
        pc->in_idle = 0;

        if (orbit_pg_start(pc, q) == NGX_OK) {
            goto accepted;
        }
    }

    if (pool->up == 0 && pool->connecting == 0) {
        orbit_pg_query_fail(q, (char *) pool->error);
        return NGX_DECLINED;
    }

    if (pool->nwaiting >= pool->conf->queue) {
        orbit_pg_query_fail(q, "postgres queue is full");
        return NGX_DECLINED;
    }

    ngx_queue_insert_tail(&pool->waiting, &q->queue);
    q->queued = 1;
    pool->nwaiting++;

accepted:

    q->timer.handler = orbit_pg_query_timeout;
    q->timer.data = q;
    q->timer.log = pool->log;

    ngx_add_timer(&q->timer, q->timeout ? q->timeout : pool->conf->timeout);

    return NGX_OK;
}


void
orbit_pg_query_cancel(orbit_pg_query_t *q)
{
    orbit_pg_conn_t  *pc;

    if (q->timer.timer_set) {
        ngx_del_timer(&q->timer);
    }

    if (q->queued) {
        ngx_queue_remove(&q->queue);
        q->queued = 0;
        q->pool->nwaiting--;
    }

    pc = q->conn;

    if (pc) {
        /* the query runs on: the connection drains it, bounded in time */
        pc->query = NULL;
        q->conn = NULL;

        if (!pc->timer.timer_set) {
            ngx_add_timer(&pc->timer,
                          pc->pool->conf->timeout + ORBIT_PG_DRAIN_GRACE);
        }
    }

    q->handler = NULL;
}


ngx_int_t
orbit_pg_listen(orbit_pg_pool_t *pool, const char *channel,
    orbit_pg_notify_pt handler, void *data)
{
    size_t              len;
    orbit_pg_listen_t  *l;

    l = ngx_array_push(&pool->listens);
    if (l == NULL) {
        return NGX_ERROR;
    }

    /* quote the identifier ourselves: PQescapeIdentifier needs a conn */

    len = ngx_strlen(channel);

    l->channel.data = ngx_pnalloc(pool->mem, 2 * len + 2);
    if (l->channel.data == NULL) {
        return NGX_ERROR;
    }

    l->channel.len = 0;
    l->channel.data[l->channel.len++] = '"';

    while (*channel) {
        if (*channel == '"') {
            l->channel.data[l->channel.len++] = '"';
        }
        l->channel.data[l->channel.len++] = *channel++;
    }

    l->channel.data[l->channel.len++] = '"';
    l->handler = handler;
    l->data = data;

    pool->listen_dirty = 1;

    if (pool->listener == NULL) {
        pool->listener = ngx_pcalloc(pool->mem, sizeof(orbit_pg_conn_t));
        if (pool->listener == NULL) {
            return NGX_ERROR;
        }

        pool->listener->pool = pool;
        pool->listener->listener = 1;
        orbit_pg_connect(pool->listener);

    } else if (pool->listener->state == ORBIT_PG_IDLE) {
        (void) orbit_pg_send_listens(pool->listener);
    }

    return NGX_OK;
}


/* connecting */


static void
orbit_pg_connect(orbit_pg_conn_t *pc)
{
    const char       *values[4];
    orbit_pg_pool_t  *pool;

    static const char  *keys[] = { "application_name", "dbname", "hostaddr",
                                   NULL };

    pool = pc->pool;

    pc->timer.handler = orbit_pg_conn_timer;
    pc->timer.data = pc;
    pc->timer.log = pool->log;
    pc->timer.cancelable = 1;

    if (pool->destroyed || ngx_exiting || ngx_terminate) {
        return;
    }

    /* dbname expands the conninfo; its keys override the default name */

    values[0] = "orbitdesk";
    values[1] = (char *) pool->conf->conninfo.data;
    values[2] = pool->conf->hostaddr.len ? (char *) pool->conf->hostaddr.data
                                         : NULL;
    values[3] = NULL;

    pc->pg = PQconnectStartParams(keys, values, 1);

    if (pc->pg == NULL) {
        orbit_pg_set_error(pool, "postgres: ", "out of memory");
        return;
    }

    if (PQstatus(pc->pg) == CONNECTION_BAD) {
        orbit_pg_broken(pc, PQerrorMessage(pc->pg));
        return;
    }

    pc->state = ORBIT_PG_CONNECTING;
    pc->poll = PGRES_POLLING_WRITING;
    pool->connecting++;

    if (orbit_pg_wrap_socket(pc) != NGX_OK) {
        orbit_pg_broken(pc, "cannot watch the socket");
        return;
    }

    ngx_add_timer(&pc->timer, pool->conf->connect_timeout);
}


static ngx_int_t
orbit_pg_wrap_socket(orbit_pg_conn_t *pc)
{
    int                fd;
    ngx_connection_t  *c;

    fd = PQsocket(pc->pg);

    if (pc->c) {
        if (pc->c->fd == fd) {
            return NGX_OK;
        }

        /* libpq moved to another socket (next address, SSL fallback) */

        if (pc->c->read->active || pc->c->write->active) {
            ngx_del_conn(pc->c, NGX_CLOSE_EVENT);
        }

        pc->c->fd = (ngx_socket_t) -1;
        ngx_free_connection(pc->c);
        pc->c = NULL;
    }

    if (fd < 0) {
        return NGX_ERROR;
    }

    c = ngx_get_connection(fd, pc->pool->log);
    if (c == NULL) {
        return NGX_ERROR;
    }

    c->data = pc;
    c->read->handler = orbit_pg_event_handler;
    c->write->handler = orbit_pg_event_handler;
    c->read->log = pc->pool->log;
    c->write->log = pc->pool->log;

    pc->c = c;

    if (ngx_add_conn(c) != NGX_OK) {
        return NGX_ERROR;
    }

    return NGX_OK;
}


static void
orbit_pg_event_handler(ngx_event_t *ev)
{
    ngx_connection_t  *c;
    orbit_pg_conn_t   *pc;

    c = ev->data;
    pc = c->data;

    switch (pc->state) {

    case ORBIT_PG_CONNECTING:
        orbit_pg_connect_step(pc, ev);
        break;

    case ORBIT_PG_INIT:
    case ORBIT_PG_BUSY:
        orbit_pg_busy_step(pc);
        break;

    case ORBIT_PG_IDLE:
        orbit_pg_idle_step(pc);
        break;

    default:
        break;
    }
}


static void
orbit_pg_connect_step(orbit_pg_conn_t *pc, ngx_event_t *ev)
{
    /*
     * PQconnectPoll must run only when the socket is ready the way it
     * asked: polling a connect still in progress would take it for done.
     * Edge-triggered events come once: a socket that is already writable
     * (libpq 15 asks for writing again right after the connect) gives no
     * new event, so "ready" flags are kept until libpq has used them.
     */

    for ( ;; ) {

        if (pc->poll == PGRES_POLLING_WRITING ? !pc->c->write->ready
                                              : !pc->c->read->ready)
        {
            return;
        }

        pc->c->read->ready = 0;

        pc->poll = PQconnectPoll(pc->pg);

        ngx_log_debug2(NGX_LOG_DEBUG_EVENT, pc->pool->log, 0,
                       "orbit pg: connect poll %d, status %d", pc->poll,
                       PQstatus(pc->pg));

        switch (pc->poll) {

        case PGRES_POLLING_OK:
            orbit_pg_connected(pc);
            return;

        case PGRES_POLLING_FAILED:
            orbit_pg_broken(pc, PQerrorMessage(pc->pg));
            return;

        default:
            if (orbit_pg_wrap_socket(pc) != NGX_OK) {
                orbit_pg_broken(pc, "cannot watch the socket");
                return;
            }

            if (PQstatus(pc->pg) == CONNECTION_STARTED) {
                /* a connect in progress: wait for its writability event */
                pc->c->write->ready = 0;
            }
        }
    }
}


static void
orbit_pg_connected(orbit_pg_conn_t *pc)
{
    if (orbit_pg_wrap_socket(pc) != NGX_OK
        || PQsetnonblocking(pc->pg, 1) != 0)
    {
        orbit_pg_broken(pc, "cannot watch the socket");
        return;
    }

    /* still counted as connecting until the init statement is done */
    pc->state = ORBIT_PG_INIT;

    /* the server bounds every statement by the pool's timeout too */

    if (!PQsendQuery(pc->pg, (char *) pc->pool->init_sql)) {
        orbit_pg_broken(pc, PQerrorMessage(pc->pg));
        return;
    }

    (void) orbit_pg_conn_flush(pc);
}


/* queries */


static ngx_int_t
orbit_pg_start(orbit_pg_conn_t *pc, orbit_pg_query_t *q)
{
    /*
     * A failed send or flush means the server saw no Sync, so nothing of
     * the query was committed: the caller may give it to another one.
     */

    if (!PQsendQueryParams(pc->pg, q->sql, q->nparams, NULL, q->values,
                           NULL, NULL, 0))
    {
        orbit_pg_broken(pc, PQerrorMessage(pc->pg));
        return NGX_DECLINED;
    }

    pc->state = ORBIT_PG_BUSY;

    if (orbit_pg_conn_flush(pc) != NGX_OK) {
        return NGX_DECLINED;
    }

    pc->query = q;
    q->conn = pc;

    return NGX_OK;
}


static ngx_int_t
orbit_pg_conn_flush(orbit_pg_conn_t *pc)
{
    int  rc;

    rc = PQflush(pc->pg);

    if (rc == -1) {
        orbit_pg_broken(pc, PQerrorMessage(pc->pg));
        return NGX_ERROR;
    }

    pc->flushing = (rc == 1);

    return NGX_OK;
}


static void
orbit_pg_busy_step(orbit_pg_conn_t *pc)
{
    PGresult  *res;

    if (pc->flushing && orbit_pg_conn_flush(pc) != NGX_OK) {
        return;
    }

    if (!PQconsumeInput(pc->pg)) {
        orbit_pg_broken(pc, PQerrorMessage(pc->pg));
        return;
    }

    orbit_pg_deliver_notifies(pc);

    while (!PQisBusy(pc->pg)) {

        res = PQgetResult(pc->pg);

        if (res == NULL) {
            res = pc->result;
            pc->result = NULL;

            if (pc->state == ORBIT_PG_INIT) {
                orbit_pg_command_done(pc, res);

            } else {
                orbit_pg_query_done(pc, res);
            }

            return;
        }

        /* one statement per query: keep its result, or its error */

        if (pc->result == NULL) {
            pc->result = res;

        } else if (PQresultStatus(res) == PGRES_FATAL_ERROR) {
            PQclear(pc->result);
            pc->result = res;

        } else {
            PQclear(res);
        }
    }
}


static void
orbit_pg_command_done(orbit_pg_conn_t *pc, PGresult *res)
{
    ExecStatusType  status;

    status = res ? PQresultStatus(res) : PGRES_FATAL_ERROR;

    if (status != PGRES_COMMAND_OK) {
        orbit_pg_set_error(pc->pool, "postgres: ",
                           res ? PQresultErrorMessage(res)
                               : PQerrorMessage(pc->pg));
        if (res) {
            PQclear(res);
        }

        orbit_pg_broken(pc, (char *) pc->pool->error);
        return;
    }

    PQclear(res);

    if (pc->timer.timer_set) {
        ngx_del_timer(&pc->timer);
    }

    pc->backoff = 0;
    pc->pool->connecting--;
    pc->pool->up += !pc->listener;
    pc->state = ORBIT_PG_IDLE;

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, pc->pool->log, 0,
                   "orbit pg: connection up, %ui in pool", pc->pool->up);

    orbit_pg_conn_ready(pc);
}


static void
orbit_pg_query_done(orbit_pg_conn_t *pc, PGresult *res)
{
    orbit_pg_query_t  *q;

    q = pc->query;
    pc->query = NULL;
    pc->state = ORBIT_PG_IDLE;

    if (pc->timer.timer_set) {
        ngx_del_timer(&pc->timer);
    }

    if (q) {
        q->conn = NULL;

        if (q->timer.timer_set) {
            ngx_del_timer(&q->timer);
        }

        if (res == NULL) {
            orbit_pg_query_fail(q, "postgres returned no result");
        }

        if (q->handler) {
            q->handler(q, res);
        }
    }

    if (res) {
        PQclear(res);
    }

    /* the handler may have sent a query on this very connection */

    if (pc->state == ORBIT_PG_IDLE) {
        orbit_pg_conn_ready(pc);
    }
}


/* an idle connection takes the next waiting query, or waits in the pool */

static void
orbit_pg_conn_ready(orbit_pg_conn_t *pc)
{
    ngx_queue_t       *qu;
    orbit_pg_pool_t   *pool;
    orbit_pg_query_t  *q;

    pool = pc->pool;

    if (pc->listener) {
        if (pool->listen_dirty) {
            (void) orbit_pg_send_listens(pc);
        }
        return;
    }

    if (!ngx_queue_empty(&pool->waiting)) {
        qu = ngx_queue_head(&pool->waiting);
        q = ngx_queue_data(qu, orbit_pg_query_t, queue);

        ngx_queue_remove(qu);
        q->queued = 0;
        pool->nwaiting--;

        if (orbit_pg_start(pc, q) != NGX_OK) {
            /* the connection broke before sending: requeue at the head */
            ngx_queue_insert_head(&pool->waiting, &q->queue);
            q->queued = 1;
            pool->nwaiting++;

            if (pool->up == 0 && pool->connecting == 0) {
                orbit_pg_fail_waiting(pool);
            }
        }

        return;
    }

    if (!pc->in_idle) {
        ngx_queue_insert_tail(&pool->idle, &pc->idle);
        pc->in_idle = 1;
    }
}


static void
orbit_pg_idle_step(orbit_pg_conn_t *pc)
{
    /* input on an idle connection: notifications, or the server going */

    if (!PQconsumeInput(pc->pg)) {
        orbit_pg_broken(pc, PQerrorMessage(pc->pg));
        return;
    }

    orbit_pg_deliver_notifies(pc);

    if (PQstatus(pc->pg) == CONNECTION_BAD) {
        orbit_pg_broken(pc, PQerrorMessage(pc->pg));
    }
}


static void
orbit_pg_deliver_notifies(orbit_pg_conn_t *pc)
{
    size_t              len;
    PGnotify           *n;
    ngx_uint_t          i;
    orbit_pg_listen_t  *l;

    while ((n = PQnotifies(pc->pg)) != NULL) {

        len = ngx_strlen(n->relname);
        l = pc->pool->listens.elts;

        for (i = 0; i < pc->pool->listens.nelts; i++) {
            if (l[i].channel.len == len + 2
                && ngx_strncmp(l[i].channel.data + 1, n->relname, len) == 0)
            {
                l[i].handler(l[i].data, n->relname, n->extra);
            }
        }

        PQfreemem(n);
    }
}


static ngx_int_t
orbit_pg_send_listens(orbit_pg_conn_t *pc)
{
    u_char             *p, *sql;
    size_t              len;
    ngx_uint_t          i;
    orbit_pg_listen_t  *l;

    l = pc->pool->listens.elts;
    len = 1;

    for (i = 0; i < pc->pool->listens.nelts; i++) {
        len += sizeof("LISTEN ;") + l[i].channel.len;
    }

    sql = ngx_alloc(len, pc->pool->log);
    if (sql == NULL) {
        return NGX_ERROR;
    }

    p = sql;

    for (i = 0; i < pc->pool->listens.nelts; i++) {
        p = ngx_sprintf(p, "LISTEN %V; ", &l[i].channel);
    }

    *p = '\0';

    pc->pool->listen_dirty = 0;
    pc->state = ORBIT_PG_BUSY;

    if (!PQsendQuery(pc->pg, (char *) sql)) {
        ngx_free(sql);
        pc->pool->listen_dirty = 1;
        orbit_pg_broken(pc, PQerrorMessage(pc->pg));
        return NGX_ERROR;
    }

    ngx_free(sql);

    return orbit_pg_conn_flush(pc);
}


/* failures */


static void
orbit_pg_broken(orbit_pg_conn_t *pc, const char *why)
{
    ngx_uint_t         level;
    orbit_pg_pool_t   *pool;
    orbit_pg_query_t  *q;

    pool = pc->pool;

    orbit_pg_set_error(pool, "postgres unavailable: ", why);

    level = (pc->state == ORBIT_PG_CONNECTING) ? NGX_LOG_WARN : NGX_LOG_ERR;
    ngx_log_error(level, pool->log, 0, "%s", pool->error);

    q = pc->query;
    pc->query = NULL;

    if (pc->listener) {
        pool->listen_dirty = 1;
    }

    orbit_pg_close(pc);

    if (q) {
        q->conn = NULL;

        if (q->timer.timer_set) {
            ngx_del_timer(&q->timer);
        }

        orbit_pg_query_fail(q, (char *) pool->error);

        if (q->handler) {
            q->handler(q, NULL);
        }
    }

    if (pool->up == 0 && pool->connecting == 0) {
        orbit_pg_fail_waiting(pool);
    }

    if (pool->destroyed || ngx_exiting || ngx_terminate) {
        return;
    }

    pc->backoff = pc->backoff ? ngx_min(pc->backoff * 2, ORBIT_PG_BACKOFF_MAX)
                              : ORBIT_PG_BACKOFF_MIN;

    ngx_add_timer(&pc->timer, pc->backoff);
}


static void
orbit_pg_close(orbit_pg_conn_t *pc)
{
    ngx_connection_t  *c;

    if (pc->state == ORBIT_PG_CONNECTING || pc->state == ORBIT_PG_INIT) {
        pc->pool->connecting--;

    } else if ((pc->state == ORBIT_PG_IDLE || pc->state == ORBIT_PG_BUSY)
               && !pc->listener)
    {
        pc->pool->up--;
    }

    pc->state = ORBIT_PG_CLOSED;
    pc->flushing = 0;

    if (pc->in_idle) {
        ngx_queue_remove(&pc->idle);
        pc->in_idle = 0;
    }

    if (pc->timer.timer_set) {
        ngx_del_timer(&pc->timer);
    }

    if (pc->result) {
        PQclear(pc->result);
        pc->result = NULL;
    }

    c = pc->c;

    if (c) {
        /* libpq owns the socket: nginx forgets it, PQfinish closes it */

        if (c->read->posted) {
            ngx_delete_posted_event(c->read);
        }

        if (c->write->posted) {
            ngx_delete_posted_event(c->write);
        }

        if (c->read->active || c->write->active) {
            ngx_del_conn(c, NGX_CLOSE_EVENT);
        }

        c->fd = (ngx_socket_t) -1;
        ngx_free_connection(c);
        pc->c = NULL;
    }

    if (pc->pg) {
        PQfinish(pc->pg);
        pc->pg = NULL;
    }
}


static void
orbit_pg_conn_timer(ngx_event_t *ev)
{
    orbit_pg_conn_t  *pc;

    pc = ev->data;

    switch (pc->state) {

    case ORBIT_PG_CLOSED:
        orbit_pg_connect(pc);
        return;

    case ORBIT_PG_CONNECTING:
    case ORBIT_PG_INIT:
        orbit_pg_broken(pc, "connect timed out");
        return;

    default:
        /* an abandoned query did not end in time: drop the connection */
        orbit_pg_broken(pc, "abandoned query did not finish");
        return;
    }
}


static void
orbit_pg_query_timeout(ngx_event_t *ev)
{
    orbit_pg_query_t     *q;
    orbit_pg_handler_pt   handler;

    q = ev->data;
    handler = q->handler;

    /* a running query drains on its connection, ended by the server */
    orbit_pg_query_cancel(q);

    q->timedout = 1;
    orbit_pg_query_fail(q, "postgres query timed out");

    if (handler) {
        handler(q, NULL);
    }
}


static void
orbit_pg_query_fail(orbit_pg_query_t *q, const char *why)
{
    size_t  len;

    len = ngx_strlen(why);

    while (len && (why[len - 1] == '\n' || why[len - 1] == ' ')) {
        len--;
    }

    q->error.data = ngx_pnalloc(q->mem, len);
    if (q->error.data == NULL) {
        q->error.len = 0;
        return;
    }

    ngx_memcpy(q->error.data, why, len);
    q->error.len = len;
}


static void
orbit_pg_fail_waiting(orbit_pg_pool_t *pool)
{
    ngx_queue_t       *qu;
    orbit_pg_query_t  *q;

    while (!ngx_queue_empty(&pool->waiting)) {
        qu = ngx_queue_head(&pool->waiting);
        q = ngx_queue_data(qu, orbit_pg_query_t, queue);

        ngx_queue_remove(qu);
        q->queued = 0;
        pool->nwaiting--;

        if (q->timer.timer_set) {
            ngx_del_timer(&q->timer);
        }

        orbit_pg_query_fail(q, (char *) pool->error);

        if (q->handler) {
            q->handler(q, NULL);
        }
    }
}


static void
orbit_pg_query_cleanup(void *data)
{
    orbit_pg_query_t  *q = data;

    if (q->pool) {
        orbit_pg_query_cancel(q);
    }
}


static void
orbit_pg_set_error(orbit_pg_pool_t *pool, const char *prefix,
    const char *msg)
{
    u_char  *p, *last;

    last = pool->error + sizeof(pool->error) - 1;

    if (ngx_strncmp(msg, prefix, ngx_strlen(prefix)) == 0) {
        prefix = "";
    }

    p = ngx_slprintf(pool->error, last, "%s%s", prefix, msg);

    while (p > pool->error && (p[-1] == '\n' || p[-1] == ' ')) {
        p--;
    }

    /* libpq messages span lines: keep the first */
    *p = '\0';
    p = (u_char *) ngx_strchr(pool->error, '\n');
    if (p) {
        *p = '\0';
    }
}
