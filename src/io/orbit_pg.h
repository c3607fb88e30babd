/*
 * OrbitDesk: libpq in the nginx event loop.
 *
 * Per worker: a pool of connections opened at worker start, queries with
 * bound parameters only (extended protocol), a queue when every connection
 * is busy, a timeout per query, reconnection with backoff, and one extra
 * connection for LISTEN/NOTIFY.  Nothing here blocks: the server is named
 * by address (libpq resolves host names blocking), connecting is polled
 * with PQconnectPoll and results are read with PQconsumeInput.
 */

#ifndef _ORBIT_PG_H_INCLUDED_
#define _ORBIT_PG_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>
#include <libpq-fe.h>


typedef struct orbit_pg_pool_s   orbit_pg_pool_t;
typedef struct orbit_pg_query_s  orbit_pg_query_t;


typedef struct {
    ngx_str_t                    conninfo;     /* nul-terminated */
    ngx_str_t                    hostaddr;     /* resolved, or empty */
    ngx_uint_t                   size;         /* connections per worker */
    ngx_uint_t                   queue;        /* max queued queries */
    ngx_msec_t                   timeout;      /* per query */
    ngx_msec_t                   connect_timeout;
} orbit_pg_conf_t;


/*
 * Called exactly once per accepted query, never from inside send.  res is
 * the query's result (any status: check PQresultStatus) or NULL when the
 * query never completed: q->error says why, q->timedout is set when its
 * timer fired.  res is freed when the handler returns.
 */
typedef void (*orbit_pg_handler_pt)(orbit_pg_query_t *q, PGresult *res);

/* A notification on a listened channel; strings valid during the call. */
typedef void (*orbit_pg_notify_pt)(void *data, const char *channel,
    const char *payload);


struct orbit_pg_query_s {
    const char                  *sql;
    int                          nparams;
    const char                 **values;       /* text format */
    orbit_pg_handler_pt          handler;
    void                        *data;
    ngx_msec_t                   timeout;      /* 0: the pool's */
    unsigned                     prepare:1;    /* sql is a constant: plan
                                                  it once per connection */

    ngx_str_t                    error;        /* out */
    unsigned                     timedout:1;   /* out */

    /* private */
    ngx_queue_t                  queue;        /* in pool->waiting */
    void                        *conn;         /* running on */
    orbit_pg_pool_t             *pool;
    ngx_pool_t                  *mem;
    ngx_event_t                  timer;
    unsigned                     queued:1;
};


orbit_pg_pool_t *orbit_pg_pool_create(ngx_cycle_t *cycle,
    orbit_pg_conf_t *conf);
void orbit_pg_pool_destroy(orbit_pg_pool_t *pool);

/* connections that are up and ready for queries */
ngx_uint_t orbit_pg_pool_up(orbit_pg_pool_t *pool);

/* q lives in mem; destroying mem cancels it (no handler call). */
orbit_pg_query_t *orbit_pg_query_create(ngx_pool_t *mem);

/*
 * NGX_OK: accepted.  NGX_DECLINED: the server is down or the queue is
 * full; q->error says which and the handler will not run.
 */
ngx_int_t orbit_pg_query_send(orbit_pg_pool_t *pool, orbit_pg_query_t *q);

/* No handler call after this; also run by the cleanup of q's pool. */
void orbit_pg_query_cancel(orbit_pg_query_t *q);

/*
 * LISTEN on a channel (an identifier chosen by code, quoted here) for the
 * life of the worker; re-issued after every reconnect.
 */
ngx_int_t orbit_pg_listen(orbit_pg_pool_t *pool, const char *channel,
    orbit_pg_notify_pt handler, void *data);


/* a result's value, nul-terminated, in pool; NULL when SQL NULL (or no
 * memory) */
char *orbit_pg_value(ngx_pool_t *pool, PGresult *res, int row, int col);


#endif /* _ORBIT_PG_H_INCLUDED_ */
