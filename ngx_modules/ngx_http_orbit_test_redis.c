/*
 * OrbitDesk test diagnostics: the Redis driver on locations, so the suites
 * in t/ can watch it over HTTP.  Never loaded by conf/.
 *
 *   orbit_test_redis ARG...;             ARGs are complex values; answers
 *                                        the reply as text, one line per
 *                                        array element
 *   orbit_test_redis_wait CHANNEL TIME;  answers the payload of the next
 *                                        message on CHANNEL, 504 after TIME
 *   orbit_test_redis_probe CHANNEL;      (http) every worker subscribes at
 *                                        start and logs each message at
 *                                        notice: a subscription that must
 *                                        outlive Redis restarts
 *   orbit_test_redis_pair TIME;          two commands from one request's
 *                                        pool: a BLPOP that times out
 *                                        after TIME, and queued behind it
 *                                        a PING that may wait ten times
 *                                        as long; whichever handler runs
 *                                        first answers (504 when the
 *                                        driver reports the timeout first)
 *
 * Statuses: 200 reply, 502 error reply or connection lost, 503 Redis not
 * connected, 504 timeout, 500 a command the driver refuses (SUBSCRIBE,
 * SELECT, MULTI, CLIENT REPLY...).
 * Every body is text ending in a newline.
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_orbit_module.h"
#include "ngx_http_orbit_test_module.h"
#include "realtime/orbit_rooms.h"


#define NGX_HTTP_ORBIT_TEST_REDIS_MAX_ARGS  16


typedef struct {
    ngx_str_t                    probe;
} ngx_http_orbit_test_redis_main_conf_t;


typedef struct {
    ngx_array_t                 *args;         /* ngx_http_complex_value_t */
    ngx_http_complex_value_t    *channel;
    ngx_msec_t                   wait;         /* _wait, _pair */
} ngx_http_orbit_test_redis_loc_conf_t;


typedef struct {
    ngx_http_request_t          *request;
    void                        *sub;
    ngx_event_t                  timer;        /* data: the client conn */
} ngx_http_orbit_test_redis_waiter_t;


typedef struct {
    ngx_http_request_t          *request;
    unsigned                     done:1;
} ngx_http_orbit_test_redis_pair_t;


static ngx_int_t ngx_http_orbit_test_redis_handler(ngx_http_request_t *r);
static void ngx_http_orbit_test_redis_reply(orbit_redis_cmd_t *cmd,
    redisReply *reply);
static size_t ngx_http_orbit_test_redis_length(redisReply *reply);
static u_char *ngx_http_orbit_test_redis_render(u_char *p,
    redisReply *reply);
static ngx_int_t ngx_http_orbit_test_redis_wait_handler(
    ngx_http_request_t *r);
static void ngx_http_orbit_test_redis_message(void *data, ngx_str_t *channel,
    ngx_str_t *payload);
static void ngx_http_orbit_test_redis_wait_timeout(ngx_event_t *ev);
static void ngx_http_orbit_test_redis_waiter_cleanup(void *data);
static void ngx_http_orbit_test_redis_probe(void *data, ngx_str_t *channel,
    ngx_str_t *payload);
static ngx_int_t ngx_http_orbit_test_redis_pair_handler(
    ngx_http_request_t *r);
static void ngx_http_orbit_test_redis_pair_reply(orbit_redis_cmd_t *cmd,
    redisReply *reply);
static ngx_int_t ngx_http_orbit_test_redis_send(ngx_http_request_t *r,
    ngx_uint_t status, u_char *data, size_t len);
static ngx_int_t ngx_http_orbit_test_redis_init_process(ngx_cycle_t *cycle);
static ngx_int_t ngx_http_orbit_test_publish_handler(ngx_http_request_t *r);
static char *ngx_http_orbit_test_publish(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static void *ngx_http_orbit_test_redis_create_main_conf(ngx_conf_t *cf);
static void *ngx_http_orbit_test_redis_create_loc_conf(ngx_conf_t *cf);
static char *ngx_http_orbit_test_redis(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_orbit_test_redis_wait(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
static char *ngx_http_orbit_test_redis_pair(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);


static ngx_command_t  ngx_http_orbit_test_redis_commands[] = {

    { ngx_string("orbit_test_redis"),
      NGX_HTTP_LOC_CONF|NGX_CONF_1MORE,
      ngx_http_orbit_test_redis,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("orbit_test_redis_wait"),
      NGX_HTTP_LOC_CONF|NGX_CONF_TAKE2,
      ngx_http_orbit_test_redis_wait,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("orbit_test_redis_pair"),
      NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_orbit_test_redis_pair,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    /* ?tenant=&room=a[,b]&event=&data=[&to=]: orbit_rt_broadcast, the
     * gateway's path */
    { ngx_string("orbit_test_publish"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_http_orbit_test_publish,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("orbit_test_redis_probe"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_orbit_test_redis_main_conf_t, probe),
      NULL },

      ngx_null_command
};


static ngx_http_module_t  ngx_http_orbit_test_redis_module_ctx = {
    NULL,                                  /* preconfiguration */
    NULL,                                  /* postconfiguration */

    ngx_http_orbit_test_redis_create_main_conf,
                                           /* create main configuration */
    NULL,                                  /* init main configuration */

    NULL,                                  /* create server configuration */
    NULL,                                  /* merge server configuration */

    ngx_http_orbit_test_redis_create_loc_conf,
                                           /* create location configuration */
    NULL                                   /* merge location configuration */
};


ngx_module_t  ngx_http_orbit_test_redis_module = {
    NGX_MODULE_V1,
    &ngx_http_orbit_test_redis_module_ctx, /* module context */
    ngx_http_orbit_test_redis_commands,    /* module directives */
    NGX_HTTP_MODULE,                       /* module type */
    NULL,                                  /* init master */
    NULL,                                  /* init module */
    ngx_http_orbit_test_redis_init_process,
                                           /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    NULL,                                  /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};


static ngx_int_t
ngx_http_orbit_test_redis_handler(ngx_http_request_t *r)
{
    size_t                                *lens;
    ngx_int_t                              rc;
    ngx_str_t                              v;
    ngx_uint_t                             i, n;
    const char                           **argv;
    orbit_redis_t                         *rd;
    orbit_redis_cmd_t                     *cmd;
    ngx_http_complex_value_t              *cv;
    ngx_http_orbit_test_redis_loc_conf_t  *tlcf;

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    tlcf = ngx_http_get_module_loc_conf(r, ngx_http_orbit_test_redis_module);

    rd = ngx_http_orbit_redis();
    if (rd == NULL) {
        return ngx_http_orbit_test_redis_send(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                              (u_char *) "no orbit_redis",
                                              sizeof("no orbit_redis") - 1);
    }

    n = tlcf->args->nelts;
    cv = tlcf->args->elts;

    argv = ngx_palloc(r->pool, n * (sizeof(char *) + sizeof(size_t)));
    if (argv == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    lens = (size_t *) (argv + n);

    for (i = 0; i < n; i++) {
        if (ngx_http_complex_value(r, &cv[i], &v) != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        /* hiredis copies the arguments: they need not outlive the call */

        argv[i] = (const char *) v.data;
        lens[i] = v.len;
    }

    cmd = orbit_redis_cmd_create(r->pool);
    if (cmd == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    cmd->handler = ngx_http_orbit_test_redis_reply;
    cmd->data = r;

    rc = orbit_redis_command(rd, cmd, (int) n, argv, lens);

    if (rc == NGX_DECLINED) {
        return ngx_http_orbit_test_redis_send(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                              cmd->error.data,
                                              cmd->error.len);
    }

    if (rc != NGX_OK) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "orbit test redis: %V", &cmd->error);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    /* a client that goes away destroys r->pool: the driver lets go of cmd */

    r->read_event_handler = ngx_http_test_reading;
    r->main->count++;

    return NGX_DONE;
}


static void
ngx_http_orbit_test_redis_reply(orbit_redis_cmd_t *cmd, redisReply *reply)
{
    u_char              *p, *last;
    size_t               len;
    ngx_buf_t           *b;
    ngx_uint_t           status;
    ngx_http_request_t  *r;

    r = cmd->data;

    if (reply == NULL) {
        status = cmd->timedout ? NGX_HTTP_GATEWAY_TIME_OUT
                               : NGX_HTTP_BAD_GATEWAY;

        ngx_http_orbit_test_finish(r,
            ngx_http_orbit_test_redis_send(r, status, cmd->error.data,
                                           cmd->error.len));
        return;
    }

    status = (reply->type == REDIS_REPLY_ERROR) ? NGX_HTTP_BAD_GATEWAY
                                                : NGX_HTTP_OK;

    /* the reply is freed when we return: render it into r->pool */

    len = ngx_http_orbit_test_redis_length(reply);

    p = ngx_pnalloc(r->pool, len);
    if (p == NULL) {
        ngx_http_orbit_test_finish(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    last = ngx_http_orbit_test_redis_render(p, reply);

    b = ngx_calloc_buf(r->pool);
    if (b == NULL) {
        ngx_http_orbit_test_finish(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    b->pos = p;
    b->last = last;

    ngx_http_orbit_test_finish(r,
        ngx_http_orbit_test_send(r, status, NULL, b->pos, b->last - b->pos));
}


/* An upper bound of the rendered size of reply. */

static size_t
ngx_http_orbit_test_redis_length(redisReply *reply)
{
    size_t  len;
    size_t  i;

    switch (reply->type) {

    case REDIS_REPLY_STRING:
    case REDIS_REPLY_STATUS:
    case REDIS_REPLY_ERROR:
        return reply->len + 1;

    case REDIS_REPLY_INTEGER:
        return NGX_INT64_LEN + 1;

    case REDIS_REPLY_NIL:
        return sizeof("(nil)");

    case REDIS_REPLY_ARRAY:
        if (reply->elements == 0) {
            return sizeof("(empty array)");
        }

        len = 0;

        for (i = 0; i < reply->elements; i++) {
            len += ngx_http_orbit_test_redis_length(reply->element[i]);
        }

        return len;

    default:
        return sizeof("(unknown)");
    }
}


static u_char *
ngx_http_orbit_test_redis_render(u_char *p, redisReply *reply)
{
    size_t  i;

    switch (reply->type) {

    case REDIS_REPLY_STRING:
    case REDIS_REPLY_STATUS:
    case REDIS_REPLY_ERROR:
        p = ngx_cpymem(p, reply->str, reply->len);
        break;

    case REDIS_REPLY_INTEGER:
        p = ngx_sprintf(p, "%L", (int64_t) reply->integer);
        break;

    case REDIS_REPLY_NIL:
        p = ngx_cpymem(p, "(nil)", sizeof("(nil)") - 1);
        break;

    case REDIS_REPLY_ARRAY:
        if (reply->elements == 0) {
            p = ngx_cpymem(p, "(empty array)", sizeof("(empty array)") - 1);
            break;
        }

        for (i = 0; i < reply->elements; i++) {
            p = ngx_http_orbit_test_redis_render(p, reply->element[i]);
        }

        return p;

    default:
        p = ngx_cpymem(p, "(unknown)", sizeof("(unknown)") - 1);
        break;
    }

    *p++ = LF;

    return p;
}


static ngx_int_t
ngx_http_orbit_test_redis_wait_handler(ngx_http_request_t *r)
{
    ngx_int_t                              rc;
    ngx_str_t                              channel;
    orbit_redis_t                         *rd;
    ngx_pool_cleanup_t                    *cln;
    ngx_http_orbit_test_redis_waiter_t    *w;
    ngx_http_orbit_test_redis_loc_conf_t  *tlcf;

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    tlcf = ngx_http_get_module_loc_conf(r, ngx_http_orbit_test_redis_module);

    rd = ngx_http_orbit_redis();
    if (rd == NULL) {
        return ngx_http_orbit_test_redis_send(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                              (u_char *) "no orbit_redis",
                                              sizeof("no orbit_redis") - 1);
    }

    if (ngx_http_complex_value(r, tlcf->channel, &channel) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (channel.len == 0) {
        return NGX_HTTP_BAD_REQUEST;
    }

    cln = ngx_pool_cleanup_add(r->pool,
                               sizeof(ngx_http_orbit_test_redis_waiter_t));
    if (cln == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    w = cln->data;
    ngx_memzero(w, sizeof(ngx_http_orbit_test_redis_waiter_t));

    /* ev->data is a connection, as ngx_event_ident() in debug logs reads */

    w->request = r;
    w->timer.handler = ngx_http_orbit_test_redis_wait_timeout;
    w->timer.data = r->connection;
    w->timer.log = r->connection->log;

    /*
     * Registered even while Redis is down: the driver sends SUBSCRIBE
     * when the subscriber connection comes (back) up.
     */

    w->sub = orbit_redis_subscribe(rd, &channel,
                                   ngx_http_orbit_test_redis_message, w);
    if (w->sub == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    /* every way out, client abort included, ends in the pool cleanup */

    cln->handler = ngx_http_orbit_test_redis_waiter_cleanup;

    ngx_add_timer(&w->timer, tlcf->wait);

    r->read_event_handler = ngx_http_test_reading;
    r->main->count++;

    return NGX_DONE;
}


static void
ngx_http_orbit_test_redis_message(void *data, ngx_str_t *channel,
    ngx_str_t *payload)
{
    ngx_http_orbit_test_redis_waiter_t  *w = data;

    ngx_http_request_t  *r;

    r = w->request;

    /* the first message only: let go before answering */

    orbit_redis_unsubscribe(ngx_http_orbit_redis(), w->sub);
    w->sub = NULL;

    if (w->timer.timer_set) {
        ngx_del_timer(&w->timer);
    }

    ngx_http_orbit_test_finish(r,
        ngx_http_orbit_test_redis_send(r, NGX_HTTP_OK, payload->data,
                                       payload->len));
}


static void
ngx_http_orbit_test_redis_wait_timeout(ngx_event_t *ev)
{
    ngx_http_request_t                  *r;
    ngx_http_orbit_test_redis_waiter_t  *w;

    w = (ngx_http_orbit_test_redis_waiter_t *)
            ((u_char *) ev
             - offsetof(ngx_http_orbit_test_redis_waiter_t, timer));
    r = w->request;

    orbit_redis_unsubscribe(ngx_http_orbit_redis(), w->sub);
    w->sub = NULL;

    ngx_http_orbit_test_finish(r,
        ngx_http_orbit_test_redis_send(r, NGX_HTTP_GATEWAY_TIME_OUT,
                                       (u_char *) "timeout",
                                       sizeof("timeout") - 1));
}


static void
ngx_http_orbit_test_redis_waiter_cleanup(void *data)
{
    ngx_http_orbit_test_redis_waiter_t  *w = data;

    if (w->sub) {
        orbit_redis_unsubscribe(ngx_http_orbit_redis(), w->sub);
        w->sub = NULL;
    }

    if (w->timer.timer_set) {
        ngx_del_timer(&w->timer);
    }
}


static void
ngx_http_orbit_test_redis_probe(void *data, ngx_str_t *channel,
    ngx_str_t *payload)
{
    ngx_log_t  *log = data;

    ngx_log_error(NGX_LOG_NOTICE, log, 0,
                  "orbit test redis probe: \"%V\" on \"%V\"",
                  payload, channel);
}


/*
 * A request with two commands in its pool: the BLPOP times out while the
 * PING still waits behind it, and the driver fails the PING when it drops
 * the connection.  The first handler called answers and finalizes the
 * request, which frees the pool and with it the other cmd: the driver must
 * not touch that cmd afterwards (run it under ORBIT_VALGRIND=1).
 */

static ngx_int_t
ngx_http_orbit_test_redis_pair_handler(ngx_http_request_t *r)
{
    ngx_int_t                              rc;
    orbit_redis_t                         *rd;
    orbit_redis_cmd_t                     *blpop, *ping;
    ngx_http_orbit_test_redis_pair_t      *pair;
    ngx_http_orbit_test_redis_loc_conf_t  *tlcf;

    static const char  *blpop_argv[] = { "BLPOP", "orbit:t:never", "0" };
    static const char  *ping_argv[] = { "PING" };

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    tlcf = ngx_http_get_module_loc_conf(r, ngx_http_orbit_test_redis_module);

    rd = ngx_http_orbit_redis();
    if (rd == NULL) {
        return ngx_http_orbit_test_redis_send(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                              (u_char *) "no orbit_redis",
                                              sizeof("no orbit_redis") - 1);
    }

    pair = ngx_pcalloc(r->pool, sizeof(ngx_http_orbit_test_redis_pair_t));
    blpop = orbit_redis_cmd_create(r->pool);
    ping = orbit_redis_cmd_create(r->pool);

    if (pair == NULL || blpop == NULL || ping == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    pair->request = r;

    blpop->handler = ngx_http_orbit_test_redis_pair_reply;
    blpop->data = pair;
    blpop->timeout = tlcf->wait;

    ping->handler = ngx_http_orbit_test_redis_pair_reply;
    ping->data = pair;
    ping->timeout = tlcf->wait * 10;

    rc = orbit_redis_command(rd, blpop, 3, blpop_argv, NULL);

    if (rc == NGX_DECLINED) {
        return ngx_http_orbit_test_redis_send(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                              blpop->error.data,
                                              blpop->error.len);
    }

    if (rc != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    /* without the PING, the BLPOP alone answers */

    if (orbit_redis_command(rd, ping, 1, ping_argv, NULL) != NGX_OK) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "orbit test redis: PING not sent: %V", &ping->error);
    }

    r->read_event_handler = ngx_http_test_reading;
    r->main->count++;

    return NGX_DONE;
}


static void
ngx_http_orbit_test_redis_pair_reply(orbit_redis_cmd_t *cmd,
    redisReply *reply)
{
    ngx_http_orbit_test_redis_pair_t  *pair;

    pair = cmd->data;

    /* the request may outlive its answer a little (a slow client) */

    if (pair->done) {
        return;
    }

    pair->done = 1;

    cmd->data = pair->request;
    ngx_http_orbit_test_redis_reply(cmd, reply);
}


/* Answers one line of text: data (copied, it may not outlive us) and LF. */

static ngx_int_t
ngx_http_orbit_test_redis_send(ngx_http_request_t *r, ngx_uint_t status,
    u_char *data, size_t len)
{
    u_char     *p;
    ngx_buf_t  *b;

    b = ngx_create_temp_buf(r->pool, len + 1);
    if (b == NULL) {
        return NGX_ERROR;
    }

    p = ngx_cpymem(b->pos, data, len);
    *p++ = LF;
    b->last = p;

    return ngx_http_orbit_test_send(r, status, NULL, b->pos,
                                    b->last - b->pos);
}


static ngx_int_t
ngx_http_orbit_test_redis_init_process(ngx_cycle_t *cycle)
{
    orbit_redis_t                          *rd;
    ngx_http_orbit_test_redis_main_conf_t  *tmcf;

    tmcf = ngx_http_cycle_get_module_main_conf(cycle,
                                        ngx_http_orbit_test_redis_module);

    if (tmcf == NULL || tmcf->probe.len == 0) {
        return NGX_OK;
    }

    /* ngx_http_orbit_module (loaded first) created the driver by now */

    rd = ngx_http_orbit_redis();

    if (rd == NULL) {
        ngx_log_error(NGX_LOG_WARN, cycle->log, 0,
                      "orbit_test_redis_probe needs orbit_redis");
        return NGX_OK;
    }

    /* lasts the worker's life: orbit_redis_destroy() frees it */

    if (orbit_redis_subscribe(rd, &tmcf->probe,
                              ngx_http_orbit_test_redis_probe, cycle->log)
        == NULL)
    {
        return NGX_ERROR;
    }

    return NGX_OK;
}


static void *
ngx_http_orbit_test_redis_create_main_conf(ngx_conf_t *cf)
{
    return ngx_pcalloc(cf->pool,
                       sizeof(ngx_http_orbit_test_redis_main_conf_t));
}


static void *
ngx_http_orbit_test_redis_create_loc_conf(ngx_conf_t *cf)
{
    return ngx_pcalloc(cf->pool,
                       sizeof(ngx_http_orbit_test_redis_loc_conf_t));
}


static char *
ngx_http_orbit_test_redis(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_orbit_test_redis_loc_conf_t *tlcf = conf;

    ngx_str_t                         *value;
    ngx_uint_t                         i;
    ngx_http_core_loc_conf_t          *clcf;
    ngx_http_complex_value_t          *cv;
    ngx_http_compile_complex_value_t   ccv;

    if (tlcf->args || tlcf->channel || tlcf->wait) {
        return "is duplicate";
    }

    if (cf->args->nelts - 1 > NGX_HTTP_ORBIT_TEST_REDIS_MAX_ARGS) {
        return "has too many arguments";
    }

    tlcf->args = ngx_array_create(cf->pool, cf->args->nelts - 1,
                                  sizeof(ngx_http_complex_value_t));
    if (tlcf->args == NULL) {
        return NGX_CONF_ERROR;
    }

    value = cf->args->elts;

    for (i = 1; i < cf->args->nelts; i++) {
        cv = ngx_array_push(tlcf->args);
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

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);
    clcf->handler = ngx_http_orbit_test_redis_handler;

    return NGX_CONF_OK;
}


static char *
ngx_http_orbit_test_redis_wait(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_orbit_test_redis_loc_conf_t *tlcf = conf;

    ngx_str_t                         *value;
    ngx_http_core_loc_conf_t          *clcf;
    ngx_http_compile_complex_value_t   ccv;

    if (tlcf->args || tlcf->channel || tlcf->wait) {
        return "is duplicate";
    }

    value = cf->args->elts;

    tlcf->channel = ngx_palloc(cf->pool, sizeof(ngx_http_complex_value_t));
    if (tlcf->channel == NULL) {
        return NGX_CONF_ERROR;
    }

    ngx_memzero(&ccv, sizeof(ngx_http_compile_complex_value_t));

    ccv.cf = cf;
    ccv.value = &value[1];
    ccv.complex_value = tlcf->channel;

    if (ngx_http_compile_complex_value(&ccv) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    tlcf->wait = ngx_parse_time(&value[2], 0);
    if (tlcf->wait == (ngx_msec_t) NGX_ERROR || tlcf->wait == 0) {
        return "has an invalid timeout";
    }

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);
    clcf->handler = ngx_http_orbit_test_redis_wait_handler;

    return NGX_CONF_OK;
}


static char *
ngx_http_orbit_test_redis_pair(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_orbit_test_redis_loc_conf_t *tlcf = conf;

    ngx_str_t                 *value;
    ngx_http_core_loc_conf_t  *clcf;

    if (tlcf->args || tlcf->channel || tlcf->wait) {
        return "is duplicate";
    }

    value = cf->args->elts;

    tlcf->wait = ngx_parse_time(&value[1], 0);
    if (tlcf->wait == (ngx_msec_t) NGX_ERROR || tlcf->wait == 0) {
        return "has an invalid timeout";
    }

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);
    clcf->handler = ngx_http_orbit_test_redis_pair_handler;

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_http_orbit_test_publish_handler(ngx_http_request_t *r)
{
    u_char      *dst, *src, *p, *end, *comma;
    ngx_str_t    arg[5], v[5], rooms[ORBIT_RT_ROOMS_MAX];
    ngx_uint_t   i, n;

    static const char  *names[] = { "tenant", "room", "event", "data", "to" };

    for (i = 0; i < 5; i++) {
        if (ngx_http_arg(r, (u_char *) names[i], ngx_strlen(names[i]),
                         &arg[i])
            != NGX_OK)
        {
            if (i == 4) {               /* to: optional */
                ngx_str_null(&arg[i]);

            } else {
                return NGX_HTTP_BAD_REQUEST;
            }
        }

        v[i].data = ngx_pnalloc(r->pool, arg[i].len + 1);
        if (v[i].data == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        dst = v[i].data;
        src = arg[i].data;
        ngx_unescape_uri(&dst, &src, arg[i].len, NGX_UNESCAPE_URI);
        v[i].len = dst - v[i].data;
        *dst = '\0';
    }

    /* room=a,b: one event to several rooms */

    p = v[1].data;
    end = p + v[1].len;

    for (n = 0; p < end && n < ORBIT_RT_ROOMS_MAX; n++) {
        comma = ngx_strlchr(p, end, ',');
        rooms[n].data = p;
        rooms[n].len = (comma ? comma : end) - p;
        p = comma ? comma + 1 : end;
    }

    if (orbit_rt_broadcast(&v[0], rooms, n, arg[4].len ? &v[4] : NULL,
                           (char *) v[2].data, &v[3], NULL,
                           r->connection->log)
        != NGX_OK)
    {
        return NGX_HTTP_SERVICE_UNAVAILABLE;
    }

    return ngx_http_orbit_test_send(r, NGX_HTTP_OK, NULL,
                                    (u_char *) "published\n", 10);
}


static char *
ngx_http_orbit_test_publish(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_core_loc_conf_t  *clcf;

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);
    clcf->handler = ngx_http_orbit_test_publish_handler;

    return NGX_CONF_OK;
}
