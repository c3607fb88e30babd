/*
 * OrbitDesk: one libpq connection on nginx events.
 *
 * closed -> connecting -> init -> idle <-> busy, and back to closed (then
 * a backoff timer) whenever libpq reports it broken.  Every event of the
 * socket drives the step the connection is in.  nginx's epoll events are
 * edge-triggered while libpq reads at most a buffer at a time, so each
 * step reads until the socket is empty instead of waiting for an event
 * that will not come.
 */

#include <poll.h>
#include <sys/stat.h>
#include <openssl/ssl.h>

#include "io/orbit_pg_int.h"


#define ORBIT_PG_BACKOFF_MIN   100
#define ORBIT_PG_BACKOFF_MAX   1000


static ngx_int_t orbit_pg_wrap_socket(orbit_pg_conn_t *pc);
static void orbit_pg_unwrap_socket(orbit_pg_conn_t *pc);
static void orbit_pg_event(ngx_event_t *ev);
static void orbit_pg_connect_step(orbit_pg_conn_t *pc);
static void orbit_pg_connected(orbit_pg_conn_t *pc);
static void orbit_pg_init_done(orbit_pg_conn_t *pc, PGresult *res);
static void orbit_pg_busy_step(orbit_pg_conn_t *pc);
static void orbit_pg_idle_step(orbit_pg_conn_t *pc);
static ngx_uint_t orbit_pg_readable(orbit_pg_conn_t *pc);
static void orbit_pg_timer(ngx_event_t *ev);


void
orbit_pg_connect(orbit_pg_conn_t *pc)
{
    const char       *values[5];
    orbit_pg_pool_t  *pool;

    /*
     * The conninfo (dbname, expanded) comes after our defaults so that it
     * may override them.  GSS encryption is off by default: with Debian's
     * GSSAPI-enabled libpq "prefer" asks the Kerberos library on every
     * connect and then retries on a new socket.
     */

    static const char  *keys[] = { "application_name", "gssencmode",
                                   "dbname", "hostaddr", NULL };

    pool = pc->pool;

    pc->timer.handler = orbit_pg_timer;
    pc->timer.data = pc;
    pc->timer.log = pool->log;
    pc->timer.cancelable = 1;

    if (pool->destroyed || ngx_exiting || ngx_terminate) {
        return;
    }

    values[0] = "orbitdesk";
    values[1] = "disable";
    values[2] = (char *) pool->conf->conninfo.data;
    values[3] = pool->conf->hostaddr.len ? (char *) pool->conf->hostaddr.data
                                         : NULL;
    values[4] = NULL;

    pc->pg = PQconnectStartParams(keys, values, 1);

    if (pc->pg == NULL) {
        orbit_pg_broken(pc, "out of memory");
        return;
    }

    if (PQstatus(pc->pg) == CONNECTION_BAD) {
        orbit_pg_broken(pc, PQerrorMessage(pc->pg));
        return;
    }

    pc->state = ORBIT_PG_CONNECTING;
    pc->poll = PGRES_POLLING_WRITING;
    pool->connecting += !pc->listener;

    if (orbit_pg_wrap_socket(pc) != NGX_OK) {
        orbit_pg_broken(pc, "cannot watch the socket");
        return;
    }

    ngx_add_timer(&pc->timer, pool->conf->connect_timeout);
}


void
orbit_pg_close(orbit_pg_conn_t *pc)
{
    orbit_pg_pool_t  *pool;

    pool = pc->pool;

    if (!pc->listener) {
        switch (pc->state) {

        case ORBIT_PG_CONNECTING:
        case ORBIT_PG_INIT:
            pool->connecting--;
            break;

        case ORBIT_PG_IDLE:
        case ORBIT_PG_BUSY:
            pool->up--;
            break;

        default:
            break;
        }
    }

    pc->state = ORBIT_PG_CLOSED;
    pc->flushing = 0;
    pc->preparing = 0;

    /* prepared statements die with the server session */
    if (pc->prepared) {
        pc->prepared->nelts = 0;
    }

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

    orbit_pg_unwrap_socket(pc);

    if (pc->pg) {
        /* libpq owns the socket: PQfinish closes it */
        PQfinish(pc->pg);
        pc->pg = NULL;
    }
}


/*
 * The connection is lost (or never made): its query, if any, fails; the
 * queue fails too when no connection is left or coming; a reconnect is
 * scheduled with backoff.
 */

void
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


/* a healthy connection we give up on (it runs a query nobody awaits) */

void
orbit_pg_reconnect(orbit_pg_conn_t *pc, const char *why)
{
    ngx_log_error(NGX_LOG_INFO, pc->pool->log, 0,
                  "orbit pg: reconnecting: %s", why);

    orbit_pg_close(pc);
    orbit_pg_connect(pc);
}


ngx_int_t
orbit_pg_flush(orbit_pg_conn_t *pc)
{
    int  rc;

    rc = PQflush(pc->pg);

    if (rc == -1) {
        orbit_pg_broken(pc, PQerrorMessage(pc->pg));
        return NGX_ERROR;
    }

    /* the rest goes out on the next write event */
    pc->flushing = (rc == 1);

    return NGX_OK;
}


/*
 * libpq may move to a new socket while connecting (next host, SSL or GSS
 * fallback), and the new one may get the old one's number: the inode
 * tells them apart.
 */

static ngx_int_t
orbit_pg_wrap_socket(orbit_pg_conn_t *pc)
{
    int                fd;
    struct stat        st;
    ngx_connection_t  *c;

    fd = PQsocket(pc->pg);

    if (fd < 0 || fstat(fd, &st) == -1) {
        return NGX_ERROR;
    }

    if (pc->c) {
        if (pc->c->fd == fd && pc->ino == st.st_ino) {
            return NGX_OK;
        }

        orbit_pg_unwrap_socket(pc);
    }

    c = ngx_get_connection(fd, pc->pool->log);
    if (c == NULL) {
        return NGX_ERROR;
    }

    c->data = pc;
    c->read->handler = orbit_pg_event;
    c->write->handler = orbit_pg_event;
    c->read->log = pc->pool->log;
    c->write->log = pc->pool->log;

    pc->c = c;
    pc->ino = st.st_ino;

    return ngx_add_conn(c);
}


/* nginx forgets the socket; libpq closed it or will */

static void
orbit_pg_unwrap_socket(orbit_pg_conn_t *pc)
{
    ngx_connection_t  *c;

    c = pc->c;

    if (c == NULL) {
        return;
    }

    if (c->read->posted) {
        ngx_delete_posted_event(c->read);
    }

    if (c->write->posted) {
        ngx_delete_posted_event(c->write);
    }

    /* NGX_CLOSE_EVENT: no epoll_ctl on a socket that may be gone */
    if (c->read->active || c->write->active) {
        ngx_del_conn(c, NGX_CLOSE_EVENT);
    }

    ngx_free_connection(c);
    c->fd = (ngx_socket_t) -1;

    pc->c = NULL;
}


static void
orbit_pg_event(ngx_event_t *ev)
{
    ngx_connection_t  *c;
    orbit_pg_conn_t   *pc;

    c = ev->data;
    pc = c->data;

    switch (pc->state) {

    case ORBIT_PG_CONNECTING:
        orbit_pg_connect_step(pc);
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
orbit_pg_connect_step(orbit_pg_conn_t *pc)
{
    /*
     * PQconnectPoll must run only when the socket is ready the way it
     * asked: polling a connect still in progress would take it for done.
     * A socket already writable (libpq 15 asks for writing again right
     * after the connect) or already holding input gives no new edge, so
     * "ready" stays set until libpq has used it.
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

            } else if (pc->poll == PGRES_POLLING_READING
                       && orbit_pg_readable(pc))
            {
                pc->c->read->ready = 1;
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

    /* counted as connecting until the session settings are in place */
    pc->state = ORBIT_PG_INIT;

    if (!PQsendQuery(pc->pg, (char *) pc->pool->init_sql)) {
        orbit_pg_broken(pc, PQerrorMessage(pc->pg));
        return;
    }

    (void) orbit_pg_flush(pc);
}


static void
orbit_pg_init_done(orbit_pg_conn_t *pc, PGresult *res)
{
    u_char  msg[256];

    if (res == NULL || PQresultStatus(res) != PGRES_COMMAND_OK) {
        ngx_cpystrn(msg, (u_char *) (res ? PQresultErrorMessage(res)
                                         : PQerrorMessage(pc->pg)),
                    sizeof(msg));
        if (res) {
            PQclear(res);
        }

        orbit_pg_broken(pc, (char *) msg);
        return;
    }

    PQclear(res);

    if (pc->timer.timer_set) {
        ngx_del_timer(&pc->timer);
    }

    pc->backoff = 0;
    pc->state = ORBIT_PG_IDLE;

    if (!pc->listener) {
        pc->pool->connecting--;
        pc->pool->up++;
    }

    ngx_log_debug1(NGX_LOG_DEBUG_EVENT, pc->pool->log, 0,
                   "orbit pg: connection up, %ui in pool", pc->pool->up);

    orbit_pg_ready(pc);
}


static void
orbit_pg_busy_step(orbit_pg_conn_t *pc)
{
    PGresult        *res;
    ExecStatusType   status;

    if (pc->flushing && orbit_pg_flush(pc) != NGX_OK) {
        return;
    }

    for ( ;; ) {

        if (!PQconsumeInput(pc->pg)) {
            orbit_pg_broken(pc, PQerrorMessage(pc->pg));
            return;
        }

        if (pc->listener) {
            orbit_pg_deliver_notifies(pc);

            if (pc->state == ORBIT_PG_CLOSED) {
                return;
            }
        }

        while (!PQisBusy(pc->pg)) {

            res = PQgetResult(pc->pg);

            if (res == NULL) {
                res = pc->result;
                pc->result = NULL;

                if (pc->state == ORBIT_PG_INIT) {
                    orbit_pg_init_done(pc, res);

                } else if (pc->preparing) {
                    orbit_pg_prepared(pc, res);

                } else {
                    orbit_pg_result(pc, res);
                }

                return;
            }

            status = PQresultStatus(res);

            if (status == PGRES_COPY_IN || status == PGRES_COPY_OUT
                || status == PGRES_COPY_BOTH)
            {
                PQclear(res);
                orbit_pg_broken(pc, "COPY is not supported");
                return;
            }

            /* one statement per query: keep its result, or its error */

            if (pc->result == NULL) {
                pc->result = res;

            } else if (status == PGRES_FATAL_ERROR) {
                PQclear(pc->result);
                pc->result = res;

            } else {
                PQclear(res);
            }
        }

        if (!orbit_pg_readable(pc)) {
            return;
        }
    }
}


static void
orbit_pg_idle_step(orbit_pg_conn_t *pc)
{
    /* input on an idle connection: notifications, or the server going */

    do {
        if (!PQconsumeInput(pc->pg)) {
            orbit_pg_broken(pc, PQerrorMessage(pc->pg));
            return;
        }

        if (pc->listener) {
            orbit_pg_deliver_notifies(pc);
        }

        if (pc->state != ORBIT_PG_IDLE) {
            return;
        }

    } while (orbit_pg_readable(pc));

    if (PQstatus(pc->pg) == CONNECTION_BAD) {
        orbit_pg_broken(pc, PQerrorMessage(pc->pg));
    }
}


static ngx_uint_t
orbit_pg_readable(orbit_pg_conn_t *pc)
{
    SSL            *ssl;
    struct pollfd   pfd;

    /* TLS may hold decrypted input the socket no longer shows */

    ssl = PQsslInUse(pc->pg) ? PQsslStruct(pc->pg, "OpenSSL") : NULL;

    if (ssl && SSL_pending(ssl) > 0) {
        return 1;
    }

    pfd.fd = PQsocket(pc->pg);
    pfd.events = POLLIN;
    pfd.revents = 0;

    return poll(&pfd, 1, 0) > 0;
}


static void
orbit_pg_timer(ngx_event_t *ev)
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
