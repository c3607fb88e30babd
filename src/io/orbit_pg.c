/*
 * OrbitDesk: the libpq pool of a worker: queries, their queue and timers,
 * LISTEN/NOTIFY.  One connection's state machine is in orbit_pg_conn.c.
 *
 * The server enforces the pool's timeout too (statement_timeout, set when
 * a connection starts), so a query the client stopped waiting for ends on
 * the server as well and its connection drains back into the pool.  A
 * query with a shorter timeout of its own would hold its connection for
 * the rest of the pool's: that connection is dropped instead, and the
 * server ends the query within a second (client_connection_check_interval).
 * libpq's own cancel request would block: it is not used.
 */

#include "io/orbit_pg_int.h"


#define ORBIT_PG_DRAIN_GRACE   1000


static ngx_int_t orbit_pg_start(orbit_pg_conn_t *pc, orbit_pg_query_t *q);
static ngx_int_t orbit_pg_send_prepared(orbit_pg_conn_t *pc,
    orbit_pg_query_t *q, uint64_t id);
static uint64_t orbit_pg_statement_id(const char *sql);
static ngx_uint_t orbit_pg_is_prepared(orbit_pg_conn_t *pc, uint64_t id);
static ngx_int_t orbit_pg_send_listens(orbit_pg_conn_t *pc);
static void orbit_pg_query_timeout(ngx_event_t *ev);
static void orbit_pg_query_cleanup(void *data);


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
                 "SET statement_timeout = %M;"
                 " SET client_connection_check_interval = 1000%Z",
                 conf->timeout);

    ngx_cpystrn(pool->error, (u_char *) "postgres unavailable: connecting",
                sizeof(pool->error));

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
    ngx_int_t         rc;
    ngx_queue_t      *qu;
    orbit_pg_conn_t  *pc;

    q->pool = pool;
    q->timedout = 0;
    ngx_str_null(&q->error);

    if (q->sql == NULL || q->nparams < 0 || q->nparams > 65535) {
        orbit_pg_query_fail(q, "invalid query");
        return NGX_DECLINED;
    }

    if (pool->destroyed) {
        orbit_pg_query_fail(q, "postgres pool is shutting down");
        return NGX_DECLINED;
    }

    while (!ngx_queue_empty(&pool->idle)) {
        qu = ngx_queue_head(&pool->idle);
        pc = ngx_queue_data(qu, orbit_pg_conn_t, idle);

        ngx_queue_remove(qu);
        pc->in_idle = 0;

        rc = orbit_pg_start(pc, q);

        if (rc == NGX_OK) {
            goto accepted;
        }

        if (rc == NGX_ABORT) {
            /* the query is at fault, not the connection */
            orbit_pg_query_fail(q, PQerrorMessage(pc->pg));
            orbit_pg_ready(pc);
            return NGX_DECLINED;
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
    u_char             *p;
    size_t              len;
    orbit_pg_listen_t  *l;

    l = ngx_array_push(&pool->listens);
    if (l == NULL) {
        return NGX_ERROR;
    }

    /* quote the identifier ourselves: PQescapeIdentifier needs a conn */

    len = ngx_strlen(channel);

    p = ngx_pnalloc(pool->mem, 2 * len + 2);
    if (p == NULL) {
        return NGX_ERROR;
    }

    l->channel.data = p;
    *p++ = '"';

    while (*channel) {
        if (*channel == '"') {
            *p++ = '"';
        }

        *p++ = *channel++;
    }

    *p++ = '"';

    l->channel.len = p - l->channel.data;
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


/* an idle connection takes the next waiting query, or waits in the pool */

void
orbit_pg_ready(orbit_pg_conn_t *pc)
{
    ngx_int_t            rc;
    ngx_queue_t         *qu;
    orbit_pg_pool_t     *pool;
    orbit_pg_query_t    *q;
    orbit_pg_handler_pt  handler;

    pool = pc->pool;

    if (pc->listener) {
        if (pool->listen_dirty) {
            (void) orbit_pg_send_listens(pc);
        }

        return;
    }

    while (!ngx_queue_empty(&pool->waiting)) {
        qu = ngx_queue_head(&pool->waiting);
        q = ngx_queue_data(qu, orbit_pg_query_t, queue);

        /* q stays queued until it is sent: a failure leaves it there */

        rc = orbit_pg_start(pc, q);

        if (rc == NGX_DECLINED) {
            return;
        }

        ngx_queue_remove(qu);
        q->queued = 0;
        pool->nwaiting--;

        if (rc == NGX_OK) {
            return;
        }

        /* NGX_ABORT: the query is at fault; the connection takes the next */

        if (q->timer.timer_set) {
            ngx_del_timer(&q->timer);
        }

        handler = q->handler;
        orbit_pg_query_fail(q, PQerrorMessage(pc->pg));

        if (handler) {
            handler(q, NULL);
        }
    }

    /*
     * Last in, first out (as PgBouncer does): the connection used last is
     * the one taken next, so a load that needs few connections keeps to
     * few backends, whose caches stay warm.  Taken in turn, two statements
     * in flight went round all the pool's backends (the inbound benchmark
     * ran a third slower).
     */

    if (!pc->in_idle) {
        ngx_queue_insert_head(&pool->idle, &pc->idle);
        pc->in_idle = 1;
    }
}


/* the query (or the listener's LISTEN) on pc is complete */

void
orbit_pg_result(orbit_pg_conn_t *pc, PGresult *res)
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

    /* libpq may have read the server's goodbye with the result */

    if (PQstatus(pc->pg) == CONNECTION_BAD) {
        orbit_pg_broken(pc, PQerrorMessage(pc->pg));
        return;
    }

    if (pc->listener) {
        /* notifications that came with the LISTEN reply */
        orbit_pg_deliver_notifies(pc);

        if (pc->state != ORBIT_PG_IDLE) {
            return;
        }
    }

    orbit_pg_ready(pc);
}


void
orbit_pg_deliver_notifies(orbit_pg_conn_t *pc)
{
    size_t              len;
    PGnotify           *n;
    ngx_uint_t          i;
    orbit_pg_listen_t  *l;

    while (pc->state != ORBIT_PG_CLOSED
           && (n = PQnotifies(pc->pg)) != NULL)
    {
        len = ngx_strlen(n->relname);

        /* a handler may listen on more: the array may move */

        for (i = 0; i < pc->pool->listens.nelts; i++) {
            l = (orbit_pg_listen_t *) pc->pool->listens.elts + i;

            if (l->channel.len == len + 2
                && ngx_strncmp(l->channel.data + 1, n->relname, len) == 0)
            {
                l->handler(l->data, n->relname, n->extra);
            }
        }

        PQfreemem(n);
    }
}


void
orbit_pg_fail_waiting(orbit_pg_pool_t *pool)
{
    ngx_queue_t          *qu;
    orbit_pg_query_t     *q;
    orbit_pg_handler_pt   handler;

    while (!ngx_queue_empty(&pool->waiting)) {
        qu = ngx_queue_head(&pool->waiting);
        q = ngx_queue_data(qu, orbit_pg_query_t, queue);

        ngx_queue_remove(qu);
        q->queued = 0;
        pool->nwaiting--;

        if (q->timer.timer_set) {
            ngx_del_timer(&q->timer);
        }

        handler = q->handler;
        orbit_pg_query_fail(q, (char *) pool->error);

        if (handler) {
            handler(q, NULL);
        }
    }
}


void
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


void
orbit_pg_set_error(orbit_pg_pool_t *pool, const char *prefix,
    const char *msg)
{
    u_char  *p, *last, copy[sizeof(pool->error)];

    /* msg may be pool->error itself */
    ngx_cpystrn(copy, (u_char *) msg, sizeof(copy));

    if (ngx_strncmp(copy, prefix, ngx_strlen(prefix)) == 0) {
        prefix = "";
    }

    last = pool->error + sizeof(pool->error) - 1;
    p = ngx_slprintf(pool->error, last, "%s%s", prefix, copy);

    while (p > pool->error && (p[-1] == '\n' || p[-1] == ' ')) {
        p--;
    }

    *p = '\0';

    /* libpq messages span lines: keep the first */
    p = (u_char *) ngx_strchr(pool->error, '\n');
    if (p) {
        *p = '\0';
    }
}


/*
 * NGX_OK: sent.  NGX_DECLINED: the connection broke and nothing reached
 * the server (no Sync, nothing committed): another may take the query.
 * NGX_ABORT: libpq refused the query itself; the connection is fine.
 */

static ngx_int_t
orbit_pg_start(orbit_pg_conn_t *pc, orbit_pg_query_t *q)
{
    int       ok;
    uint64_t  id;
    u_char    name[24];

    if (!q->prepare) {
        ok = PQsendQueryParams(pc->pg, q->sql, q->nparams, NULL, q->values,
                               NULL, NULL, 0);

    } else {
        /*
         * A constant statement is parsed and planned once per connection:
         * the first use sends Parse alone (one extra round trip), every
         * later one Bind and Execute only.
         */

        id = orbit_pg_statement_id(q->sql);

        if (orbit_pg_is_prepared(pc, id)) {
            return orbit_pg_send_prepared(pc, q, id);
        }

        ngx_sprintf(name, "o%016uxL%Z", id);

        ok = PQsendPrepare(pc->pg, (char *) name, q->sql, q->nparams, NULL);

        if (ok) {
            pc->preparing = 1;
            pc->preparing_id = id;
        }
    }

    if (!ok)
    {
        if (PQstatus(pc->pg) == CONNECTION_OK
            && PQtransactionStatus(pc->pg) == PQTRANS_IDLE)
        {
            return NGX_ABORT;
        }

        orbit_pg_broken(pc, PQerrorMessage(pc->pg));
        return NGX_DECLINED;
    }

    pc->state = ORBIT_PG_BUSY;

    if (orbit_pg_flush(pc) != NGX_OK) {
        return NGX_DECLINED;
    }

    pc->query = q;
    q->conn = pc;

    return NGX_OK;
}


/* Parse is done: record the statement and run the query with it */

void
orbit_pg_prepared(orbit_pg_conn_t *pc, PGresult *res)
{
    uint64_t          *p;
    orbit_pg_query_t  *q;

    pc->preparing = 0;

    if (res == NULL || PQresultStatus(res) != PGRES_COMMAND_OK) {
        /* the statement's own error (syntax...) is the query's result */
        orbit_pg_result(pc, res);
        return;
    }

    PQclear(res);

    if (pc->prepared == NULL) {
        pc->prepared = ngx_array_create(pc->pool->mem, 16, sizeof(uint64_t));
    }

    p = pc->prepared ? ngx_array_push(pc->prepared) : NULL;
    if (p) {
        *p = pc->preparing_id;
    }

    q = pc->query;

    if (q == NULL) {
        /* abandoned meanwhile: the connection is free again */
        orbit_pg_result(pc, NULL);
        return;
    }

    pc->query = NULL;
    q->conn = NULL;

    if (orbit_pg_send_prepared(pc, q, pc->preparing_id) != NGX_OK) {
        /* broken or refused: fail this query alone, through its handler */
        if (q->timer.timer_set) {
            ngx_del_timer(&q->timer);
        }

        orbit_pg_query_fail(q, "postgres refused the prepared statement");

        if (q->handler) {
            q->handler(q, NULL);
        }

        if (pc->state == ORBIT_PG_IDLE) {
            orbit_pg_ready(pc);
        }
    }
}


static ngx_int_t
orbit_pg_send_prepared(orbit_pg_conn_t *pc, orbit_pg_query_t *q,
    uint64_t id)
{
    u_char  name[24];

    ngx_sprintf(name, "o%016uxL%Z", id);

    if (!PQsendQueryPrepared(pc->pg, (char *) name, q->nparams, q->values,
                             NULL, NULL, 0))
    {
        if (PQstatus(pc->pg) == CONNECTION_OK
            && PQtransactionStatus(pc->pg) == PQTRANS_IDLE)
        {
            pc->state = ORBIT_PG_IDLE;
            return NGX_ABORT;
        }

        orbit_pg_broken(pc, PQerrorMessage(pc->pg));
        return NGX_DECLINED;
    }

    pc->state = ORBIT_PG_BUSY;

    if (orbit_pg_flush(pc) != NGX_OK) {
        return NGX_DECLINED;
    }

    pc->query = q;
    q->conn = pc;

    return NGX_OK;
}


/* two independent 32-bit hashes of the text: a statement's name */

static uint64_t
orbit_pg_statement_id(const char *sql)
{
    size_t  len;

    len = ngx_strlen(sql);

    return ((uint64_t) ngx_crc32_long((u_char *) sql, len) << 32)
           | ngx_murmur_hash2((u_char *) sql, len);
}


static ngx_uint_t
orbit_pg_is_prepared(orbit_pg_conn_t *pc, uint64_t id)
{
    uint64_t    *ids;
    ngx_uint_t   i;

    if (pc->prepared == NULL) {
        return 0;
    }

    ids = pc->prepared->elts;

    for (i = 0; i < pc->prepared->nelts; i++) {
        if (ids[i] == id) {
            return 1;
        }
    }

    return 0;
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

    if (!PQsendQuery(pc->pg, (char *) sql)) {
        ngx_free(sql);
        orbit_pg_broken(pc, PQerrorMessage(pc->pg));
        return NGX_ERROR;
    }

    ngx_free(sql);

    pc->state = ORBIT_PG_BUSY;

    return orbit_pg_flush(pc);
}


static void
orbit_pg_query_timeout(ngx_event_t *ev)
{
    orbit_pg_conn_t      *pc;
    orbit_pg_query_t     *q;
    orbit_pg_handler_pt   handler;

    q = ev->data;
    handler = q->handler;
    pc = q->conn;

    orbit_pg_query_cancel(q);

    if (pc && q->timeout && q->timeout < pc->pool->conf->timeout) {
        /* the server would run it for the pool's timeout: drop it now */
        orbit_pg_reconnect(pc, "a query timed out before the pool's timeout");
    }

    q->timedout = 1;
    orbit_pg_query_fail(q, "postgres query timed out");

    if (handler) {
        handler(q, NULL);
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


char *
orbit_pg_value(ngx_pool_t *pool, PGresult *res, int row, int col)
{
    u_char  *p;
    size_t   len;

    if (PQgetisnull(res, row, col)) {
        return NULL;
    }

    len = PQgetlength(res, row, col);

    p = ngx_pnalloc(pool, len + 1);
    if (p == NULL) {
        return NULL;
    }

    ngx_memcpy(p, PQgetvalue(res, row, col), len);
    p[len] = '\0';

    return (char *) p;
}
