/*
 * OrbitDesk: the channels' directives.
 *
 *   http {
 *       orbit_channel_api  whatsapp  https://graph.facebook.com/v21.0;
 *       orbit_public_url   https://crm.example.com;
 *   }
 *
 * orbit_channel_api names the base URL of a channel's provider API, so
 * that a fake (the test suites', `orbit run`'s) or a regional endpoint
 * can stand in for the real one; a channel without one uses its
 * adapter's default.
 *
 * orbit_public_url is how the outside reaches this server (behind a TLS
 * terminator or a load balancer, not what nginx listens on): the webhook
 * URLs registered with providers (Telegram's setWebhook) and the URLs
 * some providers sign (Twilio) are built on it.
 *
 * Outbound messages and read receipts are jobs of the queue (src/jobs):
 * message.send, message.read, message.typing and channel.setup, handled
 * here by every worker, channel.poll (the email channel's IMAP), and
 * media.fetch where orbit_media names a storage.
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_orbit_module.h"
#include "channels/orbit_channel.h"


typedef struct {
    ngx_str_t                    name;
    ngx_str_t                    url;          /* no trailing "/" */
} ngx_http_orbit_channel_api_t;


typedef struct {
    ngx_array_t                 *apis;         /* of ..._channel_api_t */
    ngx_str_t                    public_url;   /* no trailing "/" */
} ngx_http_orbit_channels_main_conf_t;


static char *ngx_http_orbit_channel_api(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_orbit_public_url_directive(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
static ngx_int_t ngx_http_orbit_http_url(ngx_conf_t *cf, ngx_str_t *url);
static void *ngx_http_orbit_channels_create_main_conf(ngx_conf_t *cf);
static ngx_int_t ngx_http_orbit_channels_postconfiguration(ngx_conf_t *cf);


static ngx_command_t  ngx_http_orbit_channels_commands[] = {

    { ngx_string("orbit_channel_api"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE2,
      ngx_http_orbit_channel_api,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("orbit_public_url"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_http_orbit_public_url_directive,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

      ngx_null_command
};


static ngx_http_module_t  ngx_http_orbit_channels_module_ctx = {
    NULL,                                  /* preconfiguration */
    ngx_http_orbit_channels_postconfiguration, /* postconfiguration */

    ngx_http_orbit_channels_create_main_conf, /* create main configuration */
    NULL,                                  /* init main configuration */

    NULL,                                  /* create server configuration */
    NULL,                                  /* merge server configuration */

    NULL,                                  /* create location configuration */
    NULL                                   /* merge location configuration */
};


ngx_module_t  ngx_http_orbit_channels_module = {
    NGX_MODULE_V1,
    &ngx_http_orbit_channels_module_ctx,   /* module context */
    ngx_http_orbit_channels_commands,      /* module directives */
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


ngx_str_t *
ngx_http_orbit_channel_api_url(const char *name, ngx_str_t *fallback)
{
    size_t                                len;
    ngx_uint_t                            i;
    ngx_http_orbit_channel_api_t         *api;
    ngx_http_orbit_channels_main_conf_t  *ccf;

    ccf = ngx_http_cycle_get_module_main_conf(ngx_cycle,
                                              ngx_http_orbit_channels_module);

    if (ccf == NULL || ccf->apis == NULL) {
        return fallback;
    }

    len = ngx_strlen(name);
    api = ccf->apis->elts;

    for (i = 0; i < ccf->apis->nelts; i++) {
        if (api[i].name.len == len
            && ngx_strncmp(api[i].name.data, name, len) == 0)
        {
            return &api[i].url;
        }
    }

    return fallback;
}


static char *
ngx_http_orbit_channel_api(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_orbit_channels_main_conf_t  *ccf = conf;

    ngx_str_t                     *value;
    ngx_http_orbit_channel_api_t  *api;

    value = cf->args->elts;

    if (orbit_channel_find(value[1].data, value[1].len) == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "unknown channel \"%V\"", &value[1]);
        return NGX_CONF_ERROR;
    }

    if (ngx_http_orbit_http_url(cf, &value[2]) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    if (ccf->apis == NULL) {
        ccf->apis = ngx_array_create(cf->pool, 4,
                                     sizeof(ngx_http_orbit_channel_api_t));
        if (ccf->apis == NULL) {
            return NGX_CONF_ERROR;
        }
    }

    api = ngx_array_push(ccf->apis);
    if (api == NULL) {
        return NGX_CONF_ERROR;
    }

    api->name = value[1];
    api->url = value[2];

    return NGX_CONF_OK;
}


ngx_str_t *
ngx_http_orbit_public_url(void)
{
    ngx_http_orbit_channels_main_conf_t  *ccf;

    ccf = ngx_http_cycle_get_module_main_conf(ngx_cycle,
                                              ngx_http_orbit_channels_module);

    if (ccf == NULL || ccf->public_url.len == 0) {
        return NULL;
    }

    return &ccf->public_url;
}


static char *
ngx_http_orbit_public_url_directive(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_orbit_channels_main_conf_t  *ccf = conf;

    ngx_str_t  *value;

    if (ccf->public_url.data) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (ngx_http_orbit_http_url(cf, &value[1]) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    ccf->public_url = value[1];

    return NGX_CONF_OK;
}


/* an http(s) URL, its trailing "/" taken off */

static ngx_int_t
ngx_http_orbit_http_url(ngx_conf_t *cf, ngx_str_t *url)
{
    if (ngx_strncmp(url->data, "http://", 7) != 0
        && ngx_strncmp(url->data, "https://", 8) != 0)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"%V\" is not an http(s) URL", url);
        return NGX_ERROR;
    }

    while (url->len && url->data[url->len - 1] == '/') {
        url->len--;
    }

    return NGX_OK;
}


static void *
ngx_http_orbit_channels_create_main_conf(ngx_conf_t *cf)
{
    return ngx_pcalloc(cf->pool, sizeof(ngx_http_orbit_channels_main_conf_t));
}


static ngx_int_t
ngx_http_orbit_channels_postconfiguration(ngx_conf_t *cf)
{
    ngx_http_orbit_main_conf_t  *omcf;

    if (ngx_http_orbit_jobs_register(cf, "message.send",
                                     orbit_outbound_send_job, NULL)
        != NGX_OK
        || ngx_http_orbit_jobs_register(cf, "message.read",
                                        orbit_outbound_read_job, NULL)
           != NGX_OK
        || ngx_http_orbit_jobs_register(cf, "message.typing",
                                        orbit_outbound_typing_job, NULL)
           != NGX_OK
        || ngx_http_orbit_jobs_register(cf, "channel.setup",
                                        orbit_outbound_setup_job, NULL)
           != NGX_OK
        || ngx_http_orbit_jobs_register(cf, "channel.poll",
                                        orbit_email_poll_job, NULL)
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    /* without a storage the media.fetch jobs wait for one */

    omcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_orbit_module);

    if (omcf->storage
        && ngx_http_orbit_jobs_register(cf, "media.fetch",
                                        orbit_media_fetch_job, NULL)
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    return NGX_OK;
}
