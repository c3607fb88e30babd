/*
 * OrbitDesk test module: a channel connection's credentials opened by
 * orbit_channel_creds_open(), as the code that sends messages opens them,
 * so the suites in t/ can check what the API sealed.  Never loaded by
 * conf/: it answers secrets.
 *
 *     location = /t/creds {
 *         orbit_test_channel_creds $arg_box $arg_tenant $arg_id;
 *     }
 *
 * The three complex values, URL-decoded, are the credentials column as
 * PostgreSQL answers it ("\x..."; empty for NULL), its row's tenant_id
 * and its id.  200 with the credentials (JSON), or 422 "not opened\n".
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_orbit_test_module.h"
#include "channels/orbit_channel_creds.h"


typedef struct {
    ngx_http_complex_value_t    *args;         /* box, tenant, id */
} ngx_http_orbit_test_channels_loc_conf_t;


static ngx_int_t ngx_http_orbit_test_channels_handler(ngx_http_request_t *r);
static ngx_int_t ngx_http_orbit_test_channels_arg(ngx_http_request_t *r,
    ngx_http_complex_value_t *cv, ngx_str_t *value);
static void *ngx_http_orbit_test_channels_create_loc_conf(ngx_conf_t *cf);
static char *ngx_http_orbit_test_channel_creds(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);


static ngx_command_t  ngx_http_orbit_test_channels_commands[] = {

    { ngx_string("orbit_test_channel_creds"),
      NGX_HTTP_LOC_CONF|NGX_CONF_TAKE3,
      ngx_http_orbit_test_channel_creds,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

      ngx_null_command
};


static ngx_http_module_t  ngx_http_orbit_test_channels_module_ctx = {
    NULL,                                  /* preconfiguration */
    NULL,                                  /* postconfiguration */

    NULL,                                  /* create main configuration */
    NULL,                                  /* init main configuration */

    NULL,                                  /* create server configuration */
    NULL,                                  /* merge server configuration */

    ngx_http_orbit_test_channels_create_loc_conf, /* create location conf */
    NULL                                   /* merge location configuration */
};


ngx_module_t  ngx_http_orbit_test_channels_module = {
    NGX_MODULE_V1,
    &ngx_http_orbit_test_channels_module_ctx, /* module context */
    ngx_http_orbit_test_channels_commands, /* module directives */
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
ngx_http_orbit_test_channels_handler(ngx_http_request_t *r)
{
    char                                     *text;
    json_t                                   *creds;
    ngx_int_t                                 rc;
    ngx_str_t                                 box, tenant, id, out, type;
    ngx_http_orbit_test_channels_loc_conf_t  *tlcf;

    tlcf = ngx_http_get_module_loc_conf(r,
                                        ngx_http_orbit_test_channels_module);

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    if (ngx_http_orbit_test_channels_arg(r, &tlcf->args[0], &box) != NGX_OK
        || ngx_http_orbit_test_channels_arg(r, &tlcf->args[1], &tenant)
           != NGX_OK
        || ngx_http_orbit_test_channels_arg(r, &tlcf->args[2], &id)
           != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    creds = orbit_channel_creds_open(r->connection->log, box.data, box.len,
                                     &tenant, &id);

    if (creds == NULL) {
        return ngx_http_orbit_test_send(r, 422, NULL,
                                        (u_char *) "not opened\n", 11);
    }

    text = json_dumps(creds, JSON_COMPACT|JSON_SORT_KEYS);
    json_decref(creds);

    if (text == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    out.len = ngx_strlen(text);
    out.data = ngx_pnalloc(r->pool, out.len);

    if (out.data != NULL) {
        ngx_memcpy(out.data, text, out.len);
    }

    free(text);

    if (out.data == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_str_set(&type, "application/json");

    return ngx_http_orbit_test_send(r, NGX_HTTP_OK, &type, out.data,
                                    out.len);
}


/* a complex value, URL-decoded */

static ngx_int_t
ngx_http_orbit_test_channels_arg(ngx_http_request_t *r,
    ngx_http_complex_value_t *cv, ngx_str_t *value)
{
    u_char     *dst, *src;
    ngx_str_t   raw;

    if (ngx_http_complex_value(r, cv, &raw) != NGX_OK) {
        return NGX_ERROR;
    }

    value->data = ngx_pnalloc(r->pool, raw.len + 1);
    if (value->data == NULL) {
        return NGX_ERROR;
    }

    dst = value->data;
    src = raw.data;

    ngx_unescape_uri(&dst, &src, raw.len, 0);

    value->len = dst - value->data;

    return NGX_OK;
}


static void *
ngx_http_orbit_test_channels_create_loc_conf(ngx_conf_t *cf)
{
    return ngx_pcalloc(cf->pool,
                       sizeof(ngx_http_orbit_test_channels_loc_conf_t));
}


static char *
ngx_http_orbit_test_channel_creds(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_orbit_test_channels_loc_conf_t *tlcf = conf;

    ngx_str_t                         *value;
    ngx_uint_t                         i;
    ngx_http_core_loc_conf_t          *clcf;
    ngx_http_compile_complex_value_t   ccv;

    if (tlcf->args) {
        return "is duplicate";
    }

    tlcf->args = ngx_pcalloc(cf->pool, 3 * sizeof(ngx_http_complex_value_t));
    if (tlcf->args == NULL) {
        return NGX_CONF_ERROR;
    }

    value = cf->args->elts;

    for (i = 0; i < 3; i++) {
        ngx_memzero(&ccv, sizeof(ngx_http_compile_complex_value_t));

        ccv.cf = cf;
        ccv.value = &value[i + 1];
        ccv.complex_value = &tlcf->args[i];

        if (ngx_http_compile_complex_value(&ccv) != NGX_OK) {
            return NGX_CONF_ERROR;
        }
    }

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);
    clcf->handler = ngx_http_orbit_test_channels_handler;

    return NGX_CONF_OK;
}
