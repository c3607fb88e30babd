/*
 * OrbitDesk: the libpq driver's insides, shared by orbit_pg.c (the pool:
 * queries, queue, LISTEN) and orbit_pg_conn.c (one connection's state
 * machine on nginx events).  Not for use outside src/io.
 */

#ifndef _ORBIT_PG_INT_H_INCLUDED_
#define _ORBIT_PG_INT_H_INCLUDED_


#include "io/orbit_pg.h"


typedef enum {
    ORBIT_PG_CLOSED = 0,
    ORBIT_PG_CONNECTING,
    ORBIT_PG_INIT,               /* connected, session settings in flight */
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
    ino_t                        ino;          /* of the socket c wraps */
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
    unsigned                     preparing:1;  /* Parse of query's sql */
    uint64_t                     preparing_id;
    ngx_array_t                 *prepared;     /* of uint64_t: ids */
} orbit_pg_conn_t;


/*
 * Counters: "connecting" counts pool connections (not the listener) in
 * CONNECTING or INIT, "up" those in IDLE or BUSY.  Only orbit_pg_conn.c
 * changes them, on state changes.
 */

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
    u_char                       init_sql[128];
    u_char                       error[256];
    unsigned                     listen_dirty:1;
    unsigned                     destroyed:1;
};


/* orbit_pg_conn.c */
void orbit_pg_connect(orbit_pg_conn_t *pc);
void orbit_pg_close(orbit_pg_conn_t *pc);
void orbit_pg_broken(orbit_pg_conn_t *pc, const char *why);
void orbit_pg_reconnect(orbit_pg_conn_t *pc, const char *why);
ngx_int_t orbit_pg_flush(orbit_pg_conn_t *pc);

/* orbit_pg.c: what a connection reports to its pool */
void orbit_pg_ready(orbit_pg_conn_t *pc);
void orbit_pg_result(orbit_pg_conn_t *pc, PGresult *res);
void orbit_pg_prepared(orbit_pg_conn_t *pc, PGresult *res);
void orbit_pg_deliver_notifies(orbit_pg_conn_t *pc);
void orbit_pg_fail_waiting(orbit_pg_pool_t *pool);
void orbit_pg_query_fail(orbit_pg_query_t *q, const char *why);
void orbit_pg_set_error(orbit_pg_pool_t *pool, const char *prefix,
    const char *msg);


#endif /* _ORBIT_PG_INT_H_INCLUDED_ */
