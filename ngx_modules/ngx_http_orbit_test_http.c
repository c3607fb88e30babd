/*
 * OrbitDesk test module: exposes the worker's outbound HTTP client
 * (src/io/orbit_http_client.c) on a location, so the suites in t/ can
 * observe it over HTTP.
 *
 *     location /fetch {
 *         orbit_test_fetch http://127.0.0.1:$server_port/x
 *                          [timeout=500ms] [method=PUT] [max=64k];
 *     }
 *
 * The client's request body is forwarded, with its Content-Type; the
 * method is the client's unless method= is given.
 *
 * The answer carries the upstream's status, body and Content-Type; 504 with
 * "timeout" when the transfer timed out; 502 with the error text when
 * there was no HTTP response.  X-Orbit-Fetch-Ms tells how long the request
 * waited, for the timing assertions of the tests.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_orbit_module.h"
#include "ngx_http_orbit_test_module.h"


typedef struct {
    ngx_http_complex_value_t    *url;
    ngx_msec_t                   timeout;
    size_t                       max;
    ngx_str_t                    method;
} ngx_http_orbit_test_http_loc_conf_t;


static ngx_int_t ngx_http_orbit_test_fetch_handler(ngx_http_request_t *r);
static void ngx_http_orbit_test_fetch_start(ngx_http_request_t *r);
static ngx_int_t ngx_http_orbit_test_fetch_body(ngx_http_request_t *r,
    ngx_str_t *body);
static void ngx_http_orbit_test_fetch_done(orbit_http_req_t *fetch);
static ngx_int_t ngx_http_orbit_test_fetch_send(ngx_http_request_t *r,
    ngx_uint_t status, ngx_str_t *type, ngx_str_t *body);
static void *ngx_http_orbit_test_http_create_loc_conf(ngx_conf_t *cf);
static char *ngx_http_orbit_test_fetch(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);


static ngx_command_t  ngx_http_orbit_test_http_commands[] = {

    { ngx_string("orbit_test_fetch"),
      NGX_HTTP_LOC_CONF|NGX_CONF_1MORE,
      ngx_http_orbit_test_fetch,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

      ngx_null_command
};


static ngx_http_module_t  ngx_http_orbit_test_http_module_ctx = {
    NULL,                                  /* preconfiguration */
    NULL,                                  /* postconfiguration */

    NULL,                                  /* create main configuration */
    NULL,                                  /* init main configuration */

    NULL,                                  /* create server configuration */
    NULL,                                  /* merge server configuration */

    ngx_http_orbit_test_http_create_loc_conf, /* create location conf */
    NULL                                   /* merge location configuration */
};


ngx_module_t  ngx_http_orbit_test_http_module = {
    NGX_MODULE_V1,
    &ngx_http_orbit_test_http_module_ctx,  /* module context */
    ngx_http_orbit_test_http_commands,     /* module directives */
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
ngx_http_orbit_test_fetch_handler(ngx_http_request_t *r)
{
    ngx_int_t  rc;

    /*
     * Reading the body takes a reference on the request (r->main->count++)
     * that the post handler keeps across the fetch; NGX_DONE drops ours.
     */

    rc = ngx_http_read_client_request_body(r,
                                           ngx_http_orbit_test_fetch_start);

    if (rc >= NGX_HTTP_SPECIAL_RESPONSE) {
        return rc;
    }

    return NGX_DONE;
}


static void
ngx_http_orbit_test_fetch_start(ngx_http_request_t *r)
{
    ngx_str_t                            *type, line, text;
    orbit_http_req_t                     *fetch;
    orbit_http_client_t                  *hc;
    ngx_http_orbit_test_http_loc_conf_t  *tlcf;

    tlcf = ngx_http_get_module_loc_conf(r, ngx_http_orbit_test_http_module);

    hc = ngx_http_orbit_http_client();
    if (hc == NULL) {
        ngx_str_set(&text, "no http client");
        ngx_http_finalize_request(r,
            ngx_http_orbit_test_fetch_send(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                           NULL, &text));
        return;
    }

    fetch = orbit_http_req_create(r->pool);
    if (fetch == NULL) {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    if (ngx_http_complex_value(r, tlcf->url, &fetch->url) != NGX_OK) {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    fetch->method = tlcf->method.len ? tlcf->method : r->method_name;
    fetch->timeout = tlcf->timeout;
    fetch->max_response = tlcf->max;
    fetch->handler = ngx_http_orbit_test_fetch_done;
    fetch->data = r;

    if (ngx_http_orbit_test_fetch_body(r, &fetch->body) != NGX_OK) {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    if (r->headers_in.content_type) {
        type = &r->headers_in.content_type->value;

        line.len = sizeof("Content-Type: ") - 1 + type->len;
        line.data = ngx_pnalloc(r->pool, line.len);
        if (line.data == NULL) {
            ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
            return;
        }

        ngx_sprintf(line.data, "Content-Type: %V", type);

        if (orbit_http_req_header(fetch, &line) != NGX_OK) {
            ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
            return;
        }
    }

    if (orbit_http_send(hc, fetch) != NGX_OK) {
        ngx_http_finalize_request(r,
            ngx_http_orbit_test_fetch_send(r, NGX_HTTP_BAD_GATEWAY, NULL,
                                           &fetch->error));
        return;
    }

    /*
     * notice a client that goes away: the request pool is destroyed and its
     * cleanup cancels the fetch, so the done handler never runs
     */

    r->read_event_handler = ngx_http_test_reading;
}


static ngx_int_t
ngx_http_orbit_test_fetch_body(ngx_http_request_t *r, ngx_str_t *body)
{
    off_t         size;
    u_char       *p;
    ssize_t       n;
    ngx_buf_t    *b;
    ngx_chain_t  *cl;

    ngx_str_null(body);

    if (r->request_body == NULL || r->request_body->bufs == NULL) {
        return NGX_OK;
    }

    size = 0;

    for (cl = r->request_body->bufs; cl; cl = cl->next) {
        size += ngx_buf_size(cl->buf);
    }

    if (size == 0) {
        return NGX_OK;
    }

    p = ngx_pnalloc(r->pool, (size_t) size);
    if (p == NULL) {
        return NGX_ERROR;
    }

    body->data = p;

    for (cl = r->request_body->bufs; cl; cl = cl->next) {
        b = cl->buf;

        if (b->in_file) {
            n = ngx_read_file(b->file, p, (size_t) (b->file_last - b->file_pos),
                              b->file_pos);

            if (n != b->file_last - b->file_pos) {
                return NGX_ERROR;
            }

            p += n;
            continue;
        }

        p = ngx_cpymem(p, b->pos, b->last - b->pos);
    }

    body->len = p - body->data;

    return NGX_OK;
}


static void
ngx_http_orbit_test_fetch_done(orbit_http_req_t *fetch)
{
    ngx_str_t            text, *type;
    ngx_uint_t           i;
    ngx_table_elt_t     *h;
    ngx_connection_t    *c;
    ngx_http_request_t  *r;

    r = fetch->data;
    c = r->connection;

    ngx_log_debug3(NGX_LOG_DEBUG_HTTP, c->log, 0,
                   "orbit test fetch done, status:%ui, timedout:%d, "
                   "error:\"%V\"",
                   fetch->status, fetch->timedout, &fetch->error);

    if (fetch->timedout) {
        ngx_str_set(&text, "timeout");
        ngx_http_finalize_request(r,
            ngx_http_orbit_test_fetch_send(r, NGX_HTTP_GATEWAY_TIME_OUT,
                                           NULL, &text));

    } else if (fetch->status == 0) {
        ngx_http_finalize_request(r,
            ngx_http_orbit_test_fetch_send(r, NGX_HTTP_BAD_GATEWAY, NULL,
                                           &fetch->error));

    } else {
        type = NULL;
        h = fetch->response_headers->elts;

        for (i = 0; i < fetch->response_headers->nelts; i++) {
            if (h[i].key.len == sizeof("content-type") - 1
                && ngx_strncmp(h[i].lowcase_key, "content-type",
                               sizeof("content-type") - 1) == 0)
            {
                type = &h[i].value;
            }
        }

        ngx_http_finalize_request(r,
            ngx_http_orbit_test_fetch_send(r, fetch->status, type,
                                           &fetch->response));
    }

    /* finalized from the client's event, not from the request's own */

    ngx_http_run_posted_requests(c);
}


static ngx_int_t
ngx_http_orbit_test_fetch_send(ngx_http_request_t *r, ngx_uint_t status,
    ngx_str_t *type, ngx_str_t *body)
{
    ngx_time_t       *tp;
    ngx_msec_int_t    ms;
    ngx_table_elt_t  *h;

    tp = ngx_timeofday();
    ms = (ngx_msec_int_t) ((tp->sec - r->start_sec) * 1000
                           + (tp->msec - r->start_msec));

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    h->hash = 1;
    ngx_str_set(&h->key, "X-Orbit-Fetch-Ms");

    h->value.data = ngx_pnalloc(r->pool, NGX_INT_T_LEN);
    if (h->value.data == NULL) {
        return NGX_ERROR;
    }

    h->value.len = ngx_sprintf(h->value.data, "%M", (ngx_msec_t) ms)
                   - h->value.data;

    return ngx_http_orbit_test_send(r, status, type, body->data, body->len);
}


static void *
ngx_http_orbit_test_http_create_loc_conf(ngx_conf_t *cf)
{
    ngx_http_orbit_test_http_loc_conf_t  *conf;

    conf = ngx_pcalloc(cf->pool, sizeof(ngx_http_orbit_test_http_loc_conf_t));
    if (conf == NULL) {
        return NULL;
    }

    /*
     * set by ngx_pcalloc():
     *
     *     conf->url = NULL;
     *     conf->timeout = 0;     (the client's default)
     *     conf->max = 0;         (the client's default)
     *     conf->method = { 0, NULL };
     */

    return conf;
}


static char *
ngx_http_orbit_test_fetch(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_orbit_test_http_loc_conf_t *tlcf = conf;

    ngx_str_t                         *value, s;
    ngx_uint_t                         i;
    ngx_http_core_loc_conf_t          *clcf;
    ngx_http_compile_complex_value_t   ccv;

    if (tlcf->url) {
        return "is duplicate";
    }

    value = cf->args->elts;

    tlcf->url = ngx_palloc(cf->pool, sizeof(ngx_http_complex_value_t));
    if (tlcf->url == NULL) {
        return NGX_CONF_ERROR;
    }

    ngx_memzero(&ccv, sizeof(ngx_http_compile_complex_value_t));

    ccv.cf = cf;
    ccv.value = &value[1];
    ccv.complex_value = tlcf->url;

    if (ngx_http_compile_complex_value(&ccv) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    for (i = 2; i < cf->args->nelts; i++) {

        if (ngx_strncmp(value[i].data, "timeout=", 8) == 0) {
            s.data = value[i].data + 8;
            s.len = value[i].len - 8;

            tlcf->timeout = ngx_parse_time(&s, 0);
            if (tlcf->timeout == (ngx_msec_t) NGX_ERROR
                || tlcf->timeout == 0)
            {
                goto invalid;
            }

            continue;
        }

        if (ngx_strncmp(value[i].data, "max=", 4) == 0) {
            s.data = value[i].data + 4;
            s.len = value[i].len - 4;

            tlcf->max = ngx_parse_size(&s);
            if (tlcf->max == (size_t) NGX_ERROR || tlcf->max == 0) {
                goto invalid;
            }

            continue;
        }

        if (ngx_strncmp(value[i].data, "method=", 7) == 0
            && value[i].len > 7)
        {
            tlcf->method.data = value[i].data + 7;
            tlcf->method.len = value[i].len - 7;
            continue;
        }

        goto invalid;
    }

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);
    clcf->handler = ngx_http_orbit_test_fetch_handler;

    return NGX_CONF_OK;

invalid:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "invalid parameter \"%V\"", &value[i]);

    return NGX_CONF_ERROR;
}
