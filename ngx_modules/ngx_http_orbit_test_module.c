/*
 * OrbitDesk test diagnostics: the PostgreSQL driver on locations, so the
 * suites in t/ can watch it over HTTP.  Never loaded by conf/.
 *
 *   orbit_test_sql "SQL" [PARAM...];   PARAMs are complex values; answers
 *                                      the first column of the first row
 *   orbit_test_sql_timeout TIME;       the query's own timeout
 *   orbit_test_sql_prepare on;         a statement prepared per connection
 *   orbit_test_listen CHANNEL TIMEOUT; answers the payload of the next
 *                                      NOTIFY on CHANNEL
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_orbit_module.h"
#include "ngx_http_orbit_test_module.h"


#define NGX_HTTP_ORBIT_TEST_MAX_PARAMS  8


typedef struct {
    ngx_str_t                    sql;
    ngx_array_t                 *params;       /* ngx_http_complex_value_t */
    ngx_msec_t                   timeout;
    ngx_flag_t                   prepare;
    ngx_str_t                    channel;
    ngx_msec_t                   wait;
} ngx_http_orbit_test_loc_conf_t;


typedef struct {
    ngx_str_t                    channel;
    ngx_queue_t                  waiters;
} ngx_http_orbit_test_channel_t;


typedef struct {
    ngx_http_request_t          *r;
    ngx_queue_t                  queue;
    ngx_event_t                  timer;
    unsigned                     waiting:1;
} ngx_http_orbit_test_waiter_t;


static ngx_int_t ngx_http_orbit_test_sql_handler(ngx_http_request_t *r);
static void ngx_http_orbit_test_sql_start(ngx_http_request_t *r);
static ngx_int_t ngx_http_orbit_test_sql_send(ngx_http_request_t *r);
static void ngx_http_orbit_test_sql_done(orbit_pg_query_t *q,
    PGresult *res);
static ngx_int_t ngx_http_orbit_test_listen_handler(ngx_http_request_t *r);
static void ngx_http_orbit_test_notified(void *data, const char *channel,
    const char *payload);
static void ngx_http_orbit_test_listen_timeout(ngx_event_t *ev);
static void ngx_http_orbit_test_waiter_cleanup(void *data);
static void *ngx_http_orbit_test_create_loc_conf(ngx_conf_t *cf);
static char *ngx_http_orbit_test_sql(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_orbit_test_listen(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);


static ngx_command_t  ngx_http_orbit_test_commands[] = {

    { ngx_string("orbit_test_sql"),
      NGX_HTTP_LOC_CONF|NGX_CONF_1MORE,
      ngx_http_orbit_test_sql,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("orbit_test_sql_timeout"),
      NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_orbit_test_loc_conf_t, timeout),
      NULL },

    { ngx_string("orbit_test_sql_prepare"),
      NGX_HTTP_LOC_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_orbit_test_loc_conf_t, prepare),
      NULL },

    { ngx_string("orbit_test_listen"),
      NGX_HTTP_LOC_CONF|NGX_CONF_TAKE2,
      ngx_http_orbit_test_listen,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

      ngx_null_command
};


static ngx_http_module_t  ngx_http_orbit_test_module_ctx = {
    NULL,                                  /* preconfiguration */
    NULL,                                  /* postconfiguration */

    NULL,                                  /* create main configuration */
    NULL,                                  /* init main configuration */

    NULL,                                  /* create server configuration */
    NULL,                                  /* merge server configuration */

    ngx_http_orbit_test_create_loc_conf,   /* create location configuration */
    NULL                                   /* merge location configuration */
};


ngx_module_t  ngx_http_orbit_test_module = {
    NGX_MODULE_V1,
    &ngx_http_orbit_test_module_ctx,       /* module context */
    ngx_http_orbit_test_commands,          /* module directives */
    NGX_HTTP_MODULE,                       /* module type */
    NULL,                                  /* init master */
    NULL,                                  /* init module */
    NULL,                                  /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    NULL,                                  /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};


#define NGX_HTTP_ORBIT_TEST_MAX_CHANNELS  8

/* channels this worker listens on; LISTEN lasts the worker's life */
static ngx_http_orbit_test_channel_t
    ngx_http_orbit_test_channels[NGX_HTTP_ORBIT_TEST_MAX_CHANNELS];
static ngx_uint_t  ngx_http_orbit_test_nchannels;


static ngx_int_t
ngx_http_orbit_test_sql_handler(ngx_http_request_t *r)
{
    ngx_int_t  rc;

    /* the body is read so that $request_body may be a parameter */

    r->request_body_in_single_buf = 1;

    rc = ngx_http_read_client_request_body(r, ngx_http_orbit_test_sql_start);

    if (rc >= NGX_HTTP_SPECIAL_RESPONSE) {
        return rc;
    }

    return NGX_DONE;
}


static void
ngx_http_orbit_test_sql_start(ngx_http_request_t *r)
{
    ngx_http_finalize_request(r, ngx_http_orbit_test_sql_send(r));
}


static ngx_int_t
ngx_http_orbit_test_sql_send(ngx_http_request_t *r)
{
    ngx_str_t                        v;
    ngx_uint_t                       i;
    orbit_pg_pool_t                 *pool;
    orbit_pg_query_t                *q;
    ngx_http_complex_value_t        *cv;
    ngx_http_orbit_test_loc_conf_t  *tlcf;

    tlcf = ngx_http_get_module_loc_conf(r, ngx_http_orbit_test_module);

    pool = ngx_http_orbit_pg();
    if (pool == NULL) {
        return ngx_http_orbit_test_send(r, NGX_HTTP_SERVICE_UNAVAILABLE, NULL,
                                        (u_char *) "no orbit_postgres", 17);
    }

    q = orbit_pg_query_create(r->pool);
    if (q == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    q->sql = (char *) tlcf->sql.data;
    q->timeout = (tlcf->timeout == NGX_CONF_UNSET_MSEC) ? 0 : tlcf->timeout;
    q->prepare = (tlcf->prepare == 1);
    q->handler = ngx_http_orbit_test_sql_done;
    q->data = r;

    if (tlcf->params) {
        q->nparams = tlcf->params->nelts;
        q->values = ngx_palloc(r->pool, q->nparams * sizeof(char *));
        if (q->values == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        cv = tlcf->params->elts;

        for (i = 0; i < tlcf->params->nelts; i++) {
            if (ngx_http_complex_value(r, &cv[i], &v) != NGX_OK) {
                return NGX_HTTP_INTERNAL_SERVER_ERROR;
            }

            q->values[i] = (char *) ngx_pnalloc(r->pool, v.len + 1);
            if (q->values[i] == NULL) {
                return NGX_HTTP_INTERNAL_SERVER_ERROR;
            }

            ngx_memcpy((char *) q->values[i], v.data, v.len);
            ((char *) q->values[i])[v.len] = '\0';
        }
    }

    if (orbit_pg_query_send(pool, q) != NGX_OK) {
        return ngx_http_orbit_test_send(r, NGX_HTTP_SERVICE_UNAVAILABLE, NULL,
                                        q->error.data, q->error.len);
    }

    r->main->count++;

    return NGX_DONE;
}


static void
ngx_http_orbit_test_sql_done(orbit_pg_query_t *q, PGresult *res)
{
    u_char              *p;
    size_t               len;
    ngx_uint_t           status;
    ngx_http_request_t  *r;

    r = q->data;

    if (res == NULL) {
        status = q->timedout ? NGX_HTTP_GATEWAY_TIME_OUT
                             : NGX_HTTP_SERVICE_UNAVAILABLE;
        ngx_http_orbit_test_finish(r,
            ngx_http_orbit_test_send(r, status, NULL, q->error.data,
                                     q->error.len));
        return;
    }

    switch (PQresultStatus(res)) {

    case PGRES_TUPLES_OK:
        if (PQntuples(res) == 0 || PQnfields(res) == 0) {
            p = (u_char *) "(none)";

        } else if (PQgetisnull(res, 0, 0)) {
            p = (u_char *) "(null)";

        } else {
            p = (u_char *) PQgetvalue(res, 0, 0);
        }

        status = NGX_HTTP_OK;
        break;

    case PGRES_COMMAND_OK:
        p = (u_char *) PQcmdStatus(res);
        status = NGX_HTTP_OK;
        break;

    default:
        p = (u_char *) PQresultErrorMessage(res);
        status = NGX_HTTP_BAD_GATEWAY;
        break;
    }

    /* res is freed when we return: copy */

    len = ngx_strlen(p);

    q->error.data = ngx_pnalloc(r->pool, len);
    if (q->error.data == NULL) {
        ngx_http_orbit_test_finish(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    ngx_memcpy(q->error.data, p, len);

    ngx_http_orbit_test_finish(r,
        ngx_http_orbit_test_send(r, status, NULL, q->error.data, len));
}


static ngx_int_t
ngx_http_orbit_test_listen_handler(ngx_http_request_t *r)
{
    ngx_int_t                        rc;
    ngx_uint_t                       i;
    orbit_pg_pool_t                 *pool;
    ngx_pool_cleanup_t              *cln;
    ngx_http_orbit_test_waiter_t    *w;
    ngx_http_orbit_test_channel_t   *ch;
    ngx_http_orbit_test_loc_conf_t  *tlcf;

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    tlcf = ngx_http_get_module_loc_conf(r, ngx_http_orbit_test_module);

    pool = ngx_http_orbit_pg();
    if (pool == NULL) {
        return NGX_HTTP_SERVICE_UNAVAILABLE;
    }

    ch = ngx_http_orbit_test_channels;

    for (i = 0; i < ngx_http_orbit_test_nchannels; i++) {
        if (ch[i].channel.len == tlcf->channel.len
            && ngx_strcmp(ch[i].channel.data, tlcf->channel.data) == 0)
        {
            break;
        }
    }

    ch = &ch[i];

    if (i == ngx_http_orbit_test_nchannels) {
        if (i == NGX_HTTP_ORBIT_TEST_MAX_CHANNELS) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        ch->channel = tlcf->channel;
        ngx_queue_init(&ch->waiters);

        if (orbit_pg_listen(pool, (char *) ch->channel.data,
                            ngx_http_orbit_test_notified, ch)
            != NGX_OK)
        {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        ngx_http_orbit_test_nchannels++;
    }

    cln = ngx_pool_cleanup_add(r->pool, sizeof(ngx_http_orbit_test_waiter_t));
    if (cln == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    w = cln->data;
    ngx_memzero(w, sizeof(ngx_http_orbit_test_waiter_t));

    w->r = r;
    w->timer.handler = ngx_http_orbit_test_listen_timeout;
    w->timer.data = w;
    w->timer.log = r->connection->log;
    w->waiting = 1;

    ngx_queue_insert_tail(&ch->waiters, &w->queue);
    ngx_add_timer(&w->timer, tlcf->wait);

    cln->handler = ngx_http_orbit_test_waiter_cleanup;

    r->main->count++;

    return NGX_DONE;
}


static void
ngx_http_orbit_test_notified(void *data, const char *channel,
    const char *payload)
{
    size_t                          len;
    u_char                         *p;
    ngx_queue_t                    *q;
    ngx_http_request_t             *r;
    ngx_http_orbit_test_waiter_t   *w;
    ngx_http_orbit_test_channel_t  *ch = data;

    len = ngx_strlen(payload);

    while (!ngx_queue_empty(&ch->waiters)) {
        q = ngx_queue_head(&ch->waiters);
        w = ngx_queue_data(q, ngx_http_orbit_test_waiter_t, queue);

        ngx_queue_remove(q);
        w->waiting = 0;

        if (w->timer.timer_set) {
            ngx_del_timer(&w->timer);
        }

        r = w->r;

        p = ngx_pnalloc(r->pool, len);
        if (p == NULL) {
            ngx_http_orbit_test_finish(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
            continue;
        }

        ngx_memcpy(p, payload, len);

        ngx_http_orbit_test_finish(r,
            ngx_http_orbit_test_send(r, NGX_HTTP_OK, NULL, p, len));
    }
}


static void
ngx_http_orbit_test_listen_timeout(ngx_event_t *ev)
{
    ngx_http_request_t            *r;
    ngx_http_orbit_test_waiter_t  *w;

    w = ev->data;
    r = w->r;

    ngx_queue_remove(&w->queue);
    w->waiting = 0;

    ngx_http_orbit_test_finish(r,
        ngx_http_orbit_test_send(r, NGX_HTTP_GATEWAY_TIME_OUT, NULL,
                                 (u_char *) "timeout", 7));
}


static void
ngx_http_orbit_test_waiter_cleanup(void *data)
{
    ngx_http_orbit_test_waiter_t  *w = data;

    if (w->waiting) {
        ngx_queue_remove(&w->queue);
        w->waiting = 0;
    }

    if (w->timer.timer_set) {
        ngx_del_timer(&w->timer);
    }
}


ngx_int_t
ngx_http_orbit_test_send(ngx_http_request_t *r, ngx_uint_t status,
    ngx_str_t *type, u_char *data, size_t len)
{
    ngx_int_t     rc;
    ngx_buf_t    *b;
    ngx_chain_t   out;

    r->headers_out.status = status;
    r->headers_out.content_length_n = len;

    if (type) {
        r->headers_out.content_type = *type;

    } else {
        ngx_str_set(&r->headers_out.content_type, "text/plain");
    }

    r->headers_out.content_type_len = r->headers_out.content_type.len;

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    if (len == 0) {
        return ngx_http_send_special(r, NGX_HTTP_LAST);
    }

    b = ngx_calloc_buf(r->pool);
    if (b == NULL) {
        return NGX_ERROR;
    }

    b->pos = data;
    b->last = data + len;
    b->memory = 1;
    b->last_buf = (r == r->main) ? 1 : 0;
    b->last_in_chain = 1;

    out.buf = b;
    out.next = NULL;

    return ngx_http_output_filter(r, &out);
}


void
ngx_http_orbit_test_finish(ngx_http_request_t *r, ngx_int_t rc)
{
    ngx_connection_t  *c;

    c = r->connection;

    ngx_http_finalize_request(r, rc);
    ngx_http_run_posted_requests(c);
}


static void *
ngx_http_orbit_test_create_loc_conf(ngx_conf_t *cf)
{
    ngx_http_orbit_test_loc_conf_t  *tlcf;

    tlcf = ngx_pcalloc(cf->pool, sizeof(ngx_http_orbit_test_loc_conf_t));
    if (tlcf == NULL) {
        return NULL;
    }

    tlcf->timeout = NGX_CONF_UNSET_MSEC;
    tlcf->prepare = NGX_CONF_UNSET;

    return tlcf;
}


static char *
ngx_http_orbit_test_sql(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_orbit_test_loc_conf_t *tlcf = conf;

    ngx_str_t                         *value;
    ngx_uint_t                         i;
    ngx_http_core_loc_conf_t          *clcf;
    ngx_http_complex_value_t          *cv;
    ngx_http_compile_complex_value_t   ccv;

    value = cf->args->elts;

    tlcf->sql = value[1];

    if (cf->args->nelts > 2) {
        if (cf->args->nelts - 2 > NGX_HTTP_ORBIT_TEST_MAX_PARAMS) {
            return "has too many parameters";
        }

        tlcf->params = ngx_array_create(cf->pool, cf->args->nelts - 2,
                                        sizeof(ngx_http_complex_value_t));
        if (tlcf->params == NULL) {
            return NGX_CONF_ERROR;
        }

        for (i = 2; i < cf->args->nelts; i++) {
            cv = ngx_array_push(tlcf->params);
            if (cv == NULL) {
                return NGX_CONF_ERROR;
            }

            ngx_memzero(&ccv, sizeof(ngx_http_compile_complex_value_t));

            ccv.cf = cf;
            ccv.value = &value[i];
            ccv.complex_value = cv;

            if (ngx_http_compile_complex_value(&ccv) != NGX_OK) {
                return NGX_CONF_ERROR;
            }
        }
    }

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);
    clcf->handler = ngx_http_orbit_test_sql_handler;

    return NGX_CONF_OK;
}


static char *
ngx_http_orbit_test_listen(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_orbit_test_loc_conf_t *tlcf = conf;

    ngx_str_t                 *value;
    ngx_http_core_loc_conf_t  *clcf;

    value = cf->args->elts;

    tlcf->channel = value[1];

    tlcf->wait = ngx_parse_time(&value[2], 0);
    if (tlcf->wait == (ngx_msec_t) NGX_ERROR) {
        return "has an invalid timeout";
    }

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);
    clcf->handler = ngx_http_orbit_test_listen_handler;

    return NGX_CONF_OK;
}
