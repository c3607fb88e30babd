/*
 * OrbitDesk: the real-time gateway's directives.
 *
 *   location /socket.io/ {
 *       orbit_socketio;
 *       orbit_socketio_ping_interval  25s;
 *       orbit_socketio_ping_timeout   20s;
 *       orbit_socketio_max_payload    1m;     # Engine.IO maxPayload
 *       orbit_ws_max_queue            1m;     # a slow client's cut-off
 *   }
 *
 *   location /hubs/orchestrator {
 *       orbit_signalr;                        # SignalR JSON hub protocol
 *       orbit_signalr_keepalive       15s;    # our {"type":6}
 *       orbit_signalr_client_timeout  30s;    # silence that closes
 *       orbit_signalr_max_message     32k;    # a record, as ASP.NET's
 *   }
 *
 * orbit_ws_max_queue caps the output queue of both protocols.
 *
 * Rooms fan out through the orbit_redis server of the http block.
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_orbit_module.h"
#include "realtime/orbit_socketio.h"
#include "realtime/orbit_signalr.h"


typedef struct {
    ngx_flag_t                   socketio;
    orbit_socketio_conf_t        sio;
    ngx_flag_t                   signalr;
    orbit_signalr_conf_t         sr;
} ngx_http_orbit_realtime_loc_conf_t;


static ngx_int_t ngx_http_orbit_socketio_handler(ngx_http_request_t *r);
static char *ngx_http_orbit_socketio(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static ngx_int_t ngx_http_orbit_signalr_handler(ngx_http_request_t *r);
static char *ngx_http_orbit_signalr(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static void *ngx_http_orbit_realtime_create_loc_conf(ngx_conf_t *cf);
static char *ngx_http_orbit_realtime_merge_loc_conf(ngx_conf_t *cf,
    void *parent, void *child);


static ngx_command_t  ngx_http_orbit_realtime_commands[] = {

    { ngx_string("orbit_socketio"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_http_orbit_socketio,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("orbit_socketio_ping_interval"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_orbit_realtime_loc_conf_t, sio.ping_interval),
      NULL },

    { ngx_string("orbit_socketio_ping_timeout"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_orbit_realtime_loc_conf_t, sio.ping_timeout),
      NULL },

    { ngx_string("orbit_socketio_max_payload"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_size_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_orbit_realtime_loc_conf_t, sio.ws.max_message),
      NULL },

    { ngx_string("orbit_ws_max_queue"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_size_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_orbit_realtime_loc_conf_t, sio.ws.max_queued),
      NULL },

    { ngx_string("orbit_signalr"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_http_orbit_signalr,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("orbit_signalr_keepalive"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_orbit_realtime_loc_conf_t, sr.keepalive),
      NULL },

    { ngx_string("orbit_signalr_client_timeout"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_orbit_realtime_loc_conf_t, sr.client_timeout),
      NULL },

    { ngx_string("orbit_signalr_max_message"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_size_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_orbit_realtime_loc_conf_t, sr.ws.max_message),
      NULL },

      ngx_null_command
};


static ngx_http_module_t  ngx_http_orbit_realtime_module_ctx = {
    NULL,                                  /* preconfiguration */
    NULL,                                  /* postconfiguration */

    NULL,                                  /* create main configuration */
    NULL,                                  /* init main configuration */

    NULL,                                  /* create server configuration */
    NULL,                                  /* merge server configuration */

    ngx_http_orbit_realtime_create_loc_conf, /* create location conf */
    ngx_http_orbit_realtime_merge_loc_conf   /* merge location conf */
};


ngx_module_t  ngx_http_orbit_realtime_module = {
    NGX_MODULE_V1,
    &ngx_http_orbit_realtime_module_ctx,   /* module context */
    ngx_http_orbit_realtime_commands,      /* module directives */
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


static ngx_int_t
ngx_http_orbit_socketio_handler(ngx_http_request_t *r)
{
    ngx_http_orbit_realtime_loc_conf_t  *rlcf;

    rlcf = ngx_http_get_module_loc_conf(r, ngx_http_orbit_realtime_module);

    return orbit_socketio_handler(r, &rlcf->sio);
}


static ngx_int_t
ngx_http_orbit_signalr_handler(ngx_http_request_t *r)
{
    ngx_http_orbit_realtime_loc_conf_t  *rlcf;

    rlcf = ngx_http_get_module_loc_conf(r, ngx_http_orbit_realtime_module);

    return orbit_signalr_handler(r, &rlcf->sr);
}


static char *
ngx_http_orbit_socketio(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_orbit_realtime_loc_conf_t *rlcf = conf;

    ngx_http_core_loc_conf_t  *clcf;

    if (rlcf->socketio != NGX_CONF_UNSET) {
        return "is duplicate";
    }

    rlcf->socketio = 1;

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);
    clcf->handler = ngx_http_orbit_socketio_handler;

    return NGX_CONF_OK;
}


static char *
ngx_http_orbit_signalr(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_orbit_realtime_loc_conf_t *rlcf = conf;

    ngx_http_core_loc_conf_t  *clcf;

    if (rlcf->signalr != NGX_CONF_UNSET) {
        return "is duplicate";
    }

    rlcf->signalr = 1;

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);
    clcf->handler = ngx_http_orbit_signalr_handler;

    return NGX_CONF_OK;
}


static void *
ngx_http_orbit_realtime_create_loc_conf(ngx_conf_t *cf)
{
    ngx_http_orbit_realtime_loc_conf_t  *conf;

    conf = ngx_pcalloc(cf->pool, sizeof(ngx_http_orbit_realtime_loc_conf_t));
    if (conf == NULL) {
        return NULL;
    }

    conf->socketio = NGX_CONF_UNSET;
    conf->sio.ping_interval = NGX_CONF_UNSET_MSEC;
    conf->sio.ping_timeout = NGX_CONF_UNSET_MSEC;
    orbit_ws_conf_init(&conf->sio.ws);

    conf->signalr = NGX_CONF_UNSET;
    conf->sr.keepalive = NGX_CONF_UNSET_MSEC;
    conf->sr.client_timeout = NGX_CONF_UNSET_MSEC;
    orbit_ws_conf_init(&conf->sr.ws);

    return conf;
}


static char *
ngx_http_orbit_realtime_merge_loc_conf(ngx_conf_t *cf, void *parent,
    void *child)
{
    ngx_http_orbit_realtime_loc_conf_t *prev = parent;
    ngx_http_orbit_realtime_loc_conf_t *conf = child;

    /* Socket.IO's own defaults */
    ngx_conf_merge_msec_value(conf->sio.ping_interval,
                              prev->sio.ping_interval, 25000);
    ngx_conf_merge_msec_value(conf->sio.ping_timeout,
                              prev->sio.ping_timeout, 20000);

    orbit_ws_conf_merge(&conf->sio.ws, &prev->sio.ws);

    if (conf->sio.ws.max_message > 100 * 1024 * 1024) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "orbit_socketio_max_payload is over 100m");
        return NGX_CONF_ERROR;
    }

    /* SignalR's: the keep-alive defaults of ASP.NET Core and its clients */
    ngx_conf_merge_msec_value(conf->sr.keepalive, prev->sr.keepalive,
                              15000);
    ngx_conf_merge_msec_value(conf->sr.client_timeout,
                              prev->sr.client_timeout, 30000);
    ngx_conf_merge_size_value(conf->sr.ws.max_message,
                              prev->sr.ws.max_message, 32 * 1024);

    orbit_ws_conf_merge(&conf->sr.ws, &prev->sr.ws);

    /* one orbit_ws_max_queue for both protocols */
    conf->sr.ws.max_queued = conf->sio.ws.max_queued;

    if (conf->sr.ws.max_message > 100 * 1024 * 1024) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "orbit_signalr_max_message is over 100m");
        return NGX_CONF_ERROR;
    }

    if (conf->sr.keepalive == 0
        || conf->sr.keepalive >= conf->sr.client_timeout)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "orbit_signalr_keepalive must be shorter than "
                           "orbit_signalr_client_timeout");
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}
