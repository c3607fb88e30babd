/*
 * OrbitDesk test module: the API's rate limiter (src/api/orbit_limit.c) on
 * a location, so the suites in t/ can drive it over HTTP.
 *
 *     http {
 *         orbit_test_limit_zone  api 1m rate=100r/m;
 *         orbit_test_limit       api;
 *
 *         server {
 *             orbit_test_limit   api rate=300r/m;
 *             location /limit { orbit_test_limit_check $arg_k; }
 *         }
 *     }
 *
 * orbit_test_limit_zone and orbit_test_limit are orbit_limit_zone and
 * orbit_limit under other names (the same setters).  orbit_test_limit_check
 * counts one request of KEY (a complex value) against the location's limit:
 * 200 "ok\n" or 429 "too many requests\n", both with the rate limit
 * headers; 200 "no limit\n" without them where no limit applies.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_orbit_test_module.h"
#include "api/orbit_limit.h"


typedef struct {
    orbit_limit_conf_t           limit;
    ngx_http_complex_value_t    *key;
} ngx_http_orbit_test_limit_loc_conf_t;


static ngx_int_t ngx_http_orbit_test_limit_handler(ngx_http_request_t *r);
static void *ngx_http_orbit_test_limit_create_loc_conf(ngx_conf_t *cf);
static char *ngx_http_orbit_test_limit_merge_loc_conf(ngx_conf_t *cf,
    void *parent, void *child);
static char *ngx_http_orbit_test_limit_check(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);


static ngx_command_t  ngx_http_orbit_test_limit_commands[] = {

    { ngx_string("orbit_test_limit_zone"),
      ORBIT_LIMIT_ZONE_DIRECTIVE_TYPE,
      orbit_limit_zone_directive,
      0,
      0,
      NULL },

    { ngx_string("orbit_test_limit"),
      ORBIT_LIMIT_DIRECTIVE_TYPE,
      orbit_limit_directive,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_orbit_test_limit_loc_conf_t, limit),
      NULL },

    { ngx_string("orbit_test_limit_check"),
      NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_orbit_test_limit_check,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_orbit_test_limit_loc_conf_t, key),
      NULL },

      ngx_null_command
};


static ngx_http_module_t  ngx_http_orbit_test_limit_module_ctx = {
    NULL,                                  /* preconfiguration */
    NULL,                                  /* postconfiguration */

    NULL,                                  /* create main configuration */
    NULL,                                  /* init main configuration */

    NULL,                                  /* create server configuration */
    NULL,                                  /* merge server configuration */

    ngx_http_orbit_test_limit_create_loc_conf, /* create location conf */
    ngx_http_orbit_test_limit_merge_loc_conf   /* merge location conf */
};


ngx_module_t  ngx_http_orbit_test_limit_module = {
    NGX_MODULE_V1,
    &ngx_http_orbit_test_limit_module_ctx, /* module context */
    ngx_http_orbit_test_limit_commands,    /* module directives */
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
ngx_http_orbit_test_limit_handler(ngx_http_request_t *r)
{
    size_t                                 len;
    u_char                                *body;
    ngx_int_t                              rc;
    ngx_str_t                              key;
    ngx_uint_t                             status;
    orbit_limit_result_t                   res;
    ngx_http_orbit_test_limit_loc_conf_t  *tlcf;

    tlcf = ngx_http_get_module_loc_conf(r, ngx_http_orbit_test_limit_module);

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    if (ngx_http_complex_value(r, tlcf->key, &key) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    rc = orbit_limit_check(r, &tlcf->limit, &key, &res);

    switch (rc) {

    case NGX_DECLINED:
        return ngx_http_orbit_test_send(r, NGX_HTTP_OK, NULL,
                                        (u_char *) "no limit\n", 9);

    case NGX_BUSY:
        status = NGX_HTTP_TOO_MANY_REQUESTS;
        body = (u_char *) "too many requests\n";
        len = sizeof("too many requests\n") - 1;
        break;

    default: /* NGX_OK */
        status = NGX_HTTP_OK;
        body = (u_char *) "ok\n";
        len = 3;
        break;
    }

    if (orbit_limit_headers(r, &res) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_http_orbit_test_send(r, status, NULL, body, len);
}


static void *
ngx_http_orbit_test_limit_create_loc_conf(ngx_conf_t *cf)
{
    ngx_http_orbit_test_limit_loc_conf_t  *conf;

    /*
     * set by ngx_pcalloc():
     *
     *     conf->limit = { NULL, 0, 0 }, "not set here";
     *     conf->key = NULL;
     */

    conf = ngx_pcalloc(cf->pool,
                       sizeof(ngx_http_orbit_test_limit_loc_conf_t));
    if (conf == NULL) {
        return NULL;
    }

    return conf;
}


static char *
ngx_http_orbit_test_limit_merge_loc_conf(ngx_conf_t *cf, void *parent,
    void *child)
{
    ngx_http_orbit_test_limit_loc_conf_t  *prev = parent;
    ngx_http_orbit_test_limit_loc_conf_t  *conf = child;

    orbit_limit_merge_conf(&prev->limit, &conf->limit);

    return NGX_CONF_OK;
}


static char *
ngx_http_orbit_test_limit_check(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    char                      *rv;
    ngx_http_core_loc_conf_t  *clcf;

    rv = ngx_http_set_complex_value_slot(cf, cmd, conf);
    if (rv != NGX_CONF_OK) {
        return rv;
    }

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);
    clcf->handler = ngx_http_orbit_test_limit_handler;

    return NGX_CONF_OK;
}
